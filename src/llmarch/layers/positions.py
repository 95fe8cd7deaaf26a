"""Position information, one of three kinds (see docs/architectures):
added to token embeddings (learned, sinusoidal), rotated into queries and keys (RoPE), or none.
Each module answers `embed(pos)` (an additive (B, T, C) term or None) and `rotary(pos)` ((cos, sin) or None)."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..registry import Registry

POSITIONS: Registry = Registry("positions")


class NoPositions(nn.Module):
    def embed(self, pos: torch.Tensor) -> torch.Tensor | None:
        return None

    def rotary(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        return None


class LearnedPositions(NoPositions):
    """A trained vector per absolute position (GPT-2, BERT)."""

    def __init__(self, cfg):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(cfg.context_length, cfg.d_model))

    def embed(self, pos: torch.Tensor) -> torch.Tensor:
        return nn.functional.embedding(pos, self.weight)


class SinusoidalPositions(NoPositions):
    """PE(p, 2i) = sin(p / 10000^(2i/d)), PE(p, 2i+1) = cos(p / 10000^(2i/d))  (Vaswani et al. 2017, §3.5)."""

    def __init__(self, cfg):
        super().__init__()
        d = cfg.d_model
        p = torch.arange(cfg.context_length, dtype=torch.float32)[:, None]
        inv = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
        table = torch.zeros(cfg.context_length, d)
        table[:, 0::2] = torch.sin(p * inv)
        table[:, 1::2] = torch.cos(p * inv)[:, : d // 2]
        self.register_buffer("table", table, persistent=False)

    def embed(self, pos: torch.Tensor) -> torch.Tensor:
        return nn.functional.embedding(pos, self.table)


class RotaryPositions(NoPositions):
    """RoPE (Su et al. 2021, eq. 34): rotate each pair (x_i, x_{i+d/2}) of q and k by angle p * theta^(-2i/d).
    Half-split pairing (GPT-NeoX / Hugging Face layout), so HF LLaMA weights load without permutation."""

    def __init__(self, cfg):
        super().__init__()
        d = cfg.head_dim
        inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def rotary(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        angles = pos.float()[..., None] * self.inv_freq  # (B, T, D/2)
        angles = torch.cat((angles, angles), dim=-1)  # (B, T, D)
        return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (B, H, T, D); cos, sin: (B, T, D). Computed in fp32, returned in x's dtype."""
    h = x.float()
    x1, x2 = h.chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    return (h * cos[:, None] + rotated * sin[:, None]).to(x.dtype)


POSITIONS.register("none")(lambda cfg: NoPositions())
POSITIONS.register("learned")(LearnedPositions)
POSITIONS.register("sinusoidal")(SinusoidalPositions)
POSITIONS.register("rope")(RotaryPositions)
