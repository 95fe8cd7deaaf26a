"""ZAYA1's router (Zyphra 2025, ZAYA1 technical report; transformers' ZayaRouter and ZayaRouterMLP): the logits of
the experts come from a small MLP rather than one projection,

    h = x W_down + b_down                           (router_mlp wide)
    h <- h + g * h_prev                             (router_carry, every mixture layer after the first: h_prev the
                                                     previous mixture layer's h for the same token, g a learned gain)
    logits = GELU(GELU(RMSNorm(h) W_1 + b_1) W_2 + b_2) W_out

so each layer's choice can build on the previous layer's (ZAYA calls the carried state EDA). The carried h travels
in the forward's ctx.carry under "router". Shapes: (B, T, C) in, (B, T, choices) out."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .linear import Linear
from .norms import RMSNorm

CARRY = "router"  # ctx.carry's key for the carried router state


class MLPLogits(nn.Module):
    def __init__(self, cfg, choices: int, carries: bool):
        super().__init__()
        r = cfg.router_mlp
        self.down_proj = Linear(cfg.d_model, r, bias=True)
        self.carry_scale = nn.Parameter(torch.ones(r)) if carries else None
        self.norm = RMSNorm(r, cfg.norm_eps)
        self.fc1, self.fc2 = Linear(r, r, bias=True), Linear(r, r, bias=True)
        self.out_proj = Linear(r, choices, bias=False)
        self.writes_carry = cfg.router_carry

    def forward(self, x: torch.Tensor, carry: dict | None) -> torch.Tensor:
        h = self.down_proj(x)
        if self.carry_scale is not None:
            h = h + carry[CARRY] * self.carry_scale
        if self.writes_carry and carry is not None:
            carry[CARRY] = h
        return self.out_proj(F.gelu(self.fc2(F.gelu(self.fc1(self.norm(h))))))
