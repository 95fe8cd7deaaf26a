"""Qwen2-VL's PatchMerger (Wang et al. 2024, "Qwen2-VL", \u00a72.1: "an MLP layer compresses adjacent 2 x 2 tokens
into a single token"): each run of merge_size^2 neighbouring patch features (the processor lays each group out
contiguously) normed, concatenated and mapped by fc2(GELU(fc1(.))) into the text model's width. LayerNorm in
Qwen2-VL and Qwen3-VL, RMSNorm in Qwen2.5-VL; Qwen3-VL's DeepStack mergers norm the concatenation instead
(norm_after_merge). GLM-4V's GatedMerger (Hong et al. 2025, "GLM-4.1V-Thinking", \u00a72; transformers'
Glm4vVisionPatchMerger after the tower's downsample) convolves each group instead and maps it through a gated MLP."""
from __future__ import annotations

import torch
from torch import nn

from ..layers.ffn import ACTIVATIONS, FFNS
from ..layers.linear import Linear
from ..layers.norms import NORMS


class PatchMerger(nn.Module):
    def __init__(self, width: int, out_width: int, merge_size: int, norm: str, eps: float,
                 norm_after_merge: bool = False):
        super().__init__()
        self.hidden = width * merge_size ** 2
        self.norm_after_merge = norm_after_merge
        self.norm = NORMS[norm](self.hidden if norm_after_merge else width, eps, True)
        self.fc1 = Linear(self.hidden, self.hidden)
        self.fc2 = Linear(self.hidden, out_width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (P, width) -> (P / merge_size^2, out_width)."""
        x = self.norm(x.reshape(-1, self.hidden)) if self.norm_after_merge else self.norm(x).reshape(-1, self.hidden)
        return self.fc2(ACTIVATIONS["gelu"](self.fc1(x)))


class GatedMerger(nn.Module):
    """GLM-4V: each merge_size x merge_size group of patch features convolved (kernel and stride merge_size) to
    out_width, then proj, a LayerNorm (eps 1e-5, nn.LayerNorm's default), exact GELU and a SwiGLU MLP of `hidden`,
    all without biases but the convolution's."""

    def __init__(self, width: int, out_width: int, merge_size: int, hidden: int):
        super().__init__()
        self.width, self.m = width, merge_size
        self.downsample = nn.Conv2d(width, out_width, merge_size, stride=merge_size)
        self.proj = Linear(out_width, out_width, bias=False)
        self.norm = NORMS["layernorm"](out_width, 1e-5, True)
        self.mlp = FFNS["swiglu"](out_width, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (P, width), each group's patches row by row -> (P / merge_size^2, out_width)."""
        groups = x.view(-1, self.m, self.m, self.width).permute(0, 3, 1, 2)  # (G, width, m, m)
        x = self.downsample(groups).flatten(1)  # (G, out_width)
        return self.mlp(ACTIVATIONS["gelu"](self.norm(self.proj(x))))
