"""Qwen2.5-Omni's audio encoder (Xu et al. 2025, "Qwen2.5-Omni Technical Report", \u00a72.2: Whisper-large-v3's
encoder reading audio in 2-second blocks; transformers' Qwen2_5OmniAudioEncoder): each clip's real frames (no
padding to 30 s) cut into chunks of 2 x window frames, the last shorter; each chunk through Whisper's stem (GELU(conv1),
GELU(conv2, stride 2)) with Whisper's sinusoids from position 0 (computed, not stored: the checkpoint has none); the
blocks (tower.py's, llmarch's own Block) attending within each chunk only; then each clip's frames average-pooled in
pairs (an odd last frame dropped) and the final LayerNorm. A chunk shorter than the rest reads zeros past its end,
as the zero padding of transformers' batch of chunks gives it.
Shapes: features (N, n_mels, frames) with each clip's real frames (N,) -> (sum of each clip's pooled frames, width)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import LlmarchError
from ..layers.attention import AttentionContext
from ..layers.block import Block
from ..layers.norms import make_norm
from ..layers.positions import fairseq_sinusoids
from ..vision.qwen_tower import segment_mask
from .config import AudioConfig
from .tower import block_config


class ChunkedAudioTower(nn.Module):
    def __init__(self, a: AudioConfig):
        super().__init__()
        self.a = a
        cfg = block_config(a)
        self.conv1 = nn.Conv1d(a.n_mels, a.width, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(a.width, a.width, kernel_size=3, stride=2, padding=1)
        self.blocks = nn.ModuleList(Block(cfg.for_layer(i), layer=i) for i in range(a.n_layers))
        self.norm = make_norm(cfg)

    def _stem(self, chunks: list[torch.Tensor]) -> torch.Tensor:
        """Chunks (n_mels, L_k) -> their stem outputs one after another (sum of (L_k - 1) // 2 + 1, width)."""
        padded = nn.utils.rnn.pad_sequence([c.T for c in chunks], batch_first=True).transpose(1, 2)  # (K, M, L)
        x = F.gelu(self.conv2(F.gelu(self.conv1(padded.to(self.conv1.weight.dtype))) * _real(chunks, padded)))
        x = x.transpose(1, 2) + fairseq_sinusoids(x.shape[2], self.a.width).to(x)  # (K, S, C)
        return torch.cat([x[k, :(c.shape[1] - 1) // 2 + 1] for k, c in enumerate(chunks)])

    def forward(self, features: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        a, span = self.a, 2 * self.a.window
        if features.dim() != 3 or features.shape[1] != a.n_mels:
            raise LlmarchError(f"input_features must have shape (clips, {a.n_mels}, frames), got "
                               f"{tuple(features.shape)}")
        lengths = [features.shape[2]] * features.shape[0] if frames is None else [int(f) for f in frames]
        if min(lengths) < 2 * a.pool:
            raise LlmarchError(f"each audio clip needs at least {2 * a.pool} frames, got {min(lengths)}")
        chunks = [c for n, length in enumerate(lengths) for c in features[n, :, :length].split(span, dim=1)]
        x = self._stem(chunks)[None]  # (1, P, C): every chunk's frames, packed
        mask = segment_mask([(c.shape[1] - 1) // 2 + 1 for c in chunks], x.device)
        ctx = AttentionContext(mask=mask, causal=False, rope=None, input_pos=torch.arange(x.shape[1], device=x.device))
        for block in self.blocks:
            x = block(x, ctx)
        clips = x[0].split([(length - 1) // 2 + 1 for length in lengths])
        pooled = [F.avg_pool1d(c.T[None], a.pool, a.pool)[0].T for c in clips]  # AvgPool1d(2, 2): the odd one dropped
        return self.norm(torch.cat(pooled))


def _real(chunks: list[torch.Tensor], padded: torch.Tensor) -> torch.Tensor:
    """(K, 1, L): 1 on each chunk's real frames (transformers zeroes conv1's output past them)."""
    lengths = torch.tensor([c.shape[1] for c in chunks], device=padded.device)
    return (torch.arange(padded.shape[2], device=padded.device)[None] < lengths[:, None])[:, None].to(padded.dtype)
