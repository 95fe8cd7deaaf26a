"""Gemma 4's audio encoder (transformers' Gemma4AudioModel; the Universal Speech Model's Conformer, Zhang et al.
2023, "Google USM", §3.1, after Gulati et al. 2020): a log-mel spectrogram (N, T, n_mels), frames first, through
    a stem of two Conv2d (3 x 3, stride 2 over time and frequency, padding 1, no bias), each followed by a LayerNorm
    over channels (no bias) and ReLU, the clip's padded frames zeroed before each; its (T / 4, n_mels / 4, c) output
    flattened per frame and projected to the width (no bias)
    Conformer blocks (layers/conformer.py), each frame attending to its local band of the clip's real frames
    an output projection W x + b to output_dims (none where output_dims is 0)
A clip of t real frames has ceil(ceil(t / 2) / 2) real encoder frames (every other frame's mask, twice). Shapes:
features (N, T, n_mels), frames (N,) -> (N, ceil(ceil(T / 2) / 2), output_dims)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import LlmarchError
from ..layers.conformer import ConformerBlock
from ..layers.linear import Linear
from .config import AudioConfig


class SubsampleStem(nn.Module):
    """Two stride-2 Conv2d, LayerNorm over channels, ReLU; then the frame's rows and channels into the width."""

    def __init__(self, a: AudioConfig):
        super().__init__()
        c0, c1 = a.conv_channels
        self.convs = nn.ModuleList(nn.Conv2d(i, o, 3, stride=2, padding=1, bias=False) for i, o in ((1, c0), (c0, c1)))
        self.norms = nn.ModuleList(nn.LayerNorm(c, eps=a.norm_eps, bias=False) for c in (c0, c1))
        self.proj = Linear(c0 // 4 * c1, a.width, bias=False)

    def forward(self, x: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, T, M), real (N, T) bool -> (N, T', C), real (N, T'), T' = ceil(ceil(T / 2) / 2)."""
        h = x[:, None]  # (N, 1, T, M)
        for conv, norm in zip(self.convs, self.norms):
            h = conv(h * real[:, None, :, None].to(h.dtype))  # (N, c, T / 2, M / 2)
            h = F.relu(norm(h.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
            real = real[:, ::2]
        N, _, T, _ = h.shape
        return self.proj(h.permute(0, 2, 3, 1).reshape(N, T, -1)), real


class ConformerTower(nn.Module):
    def __init__(self, a: AudioConfig):
        super().__init__()
        self.a = a
        self.stem = SubsampleStem(a)
        self.blocks = nn.ModuleList(ConformerBlock(a) for _ in range(a.n_layers))
        self.out = Linear(a.width, a.output_dims, bias=True) if a.output_dims else None

    def forward(self, features: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        """features (N, T, n_mels), frames (N,): each clip's real frames (None: all T) -> (N, T', output_dims)."""
        if features.dim() != 3 or features.shape[-1] != self.a.n_mels:
            raise LlmarchError(f"this conformer audio tower reads input_features of (clips, frames, {self.a.n_mels}) "
                               f"log-mel bins, got {tuple(features.shape)}")
        N, T, _ = features.shape
        frames = torch.full((N,), T) if frames is None else frames
        real = torch.arange(T, device=features.device)[None] < frames.to(features.device)[:, None]  # (N, T)
        x, real = self.stem(features, real)
        for block in self.blocks:
            x = block(x, real)
        return x if self.out is None else self.out(x)
