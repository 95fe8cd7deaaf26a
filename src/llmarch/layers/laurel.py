"""LAuReL (Menghani et al. 2024, "LAuReL: Learned Augmented Residual Layer", §2.2, LAuReL-LR; Gemma 3n's
laurel_rank): the residual connection x_{l+1} = f(x_l) + x_l gains a learned low-rank term, x_l + B A x_l, so the
skip path learns too at the cost of 2·d·r parameters. Gemma 3n applies it around attention, to the normed input
h = norm(x), with a norm on the low-rank term, and divides the sum by sqrt(2) (layers/block.py):
    x <- (x + post_norm(attn(h)) + h + RMSNorm(h A B)) / sqrt(2)        A: d×r, B: r×d"""
from __future__ import annotations

import torch
from torch import nn

from .linear import Linear
from .norms import make_norm


class Laurel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.down = Linear(cfg.d_model, cfg.laurel_rank, bias=False)  # A (linear_left)
        self.up = Linear(cfg.laurel_rank, cfg.d_model, bias=False)  # B (linear_right)
        self.norm = make_norm(cfg)  # post_laurel_norm

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h (B, T, d) the normed block input -> h + RMSNorm(h A B), the learned skip path."""
        sub = self._modules
        return h + sub["norm"](sub["up"](sub["down"](h)))
