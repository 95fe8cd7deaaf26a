"""A learned log-position gain on queries (Mistral Large 4's softmax_scaling; attn_log_pos_gain): each head h's query
at position p times a_h ln(1 + p) + b_h. It is the log-length scaling of Llama 4 and Ministral 3 (attention.py's
temperature; Nakanishi 2025, "Scalable-Softmax Is Superior for Attention": scores grow with ln of the context so the
softmax stays sharp) with its slope and offset learned per head. At init a = 0, b = 1: queries as they are.
p is the row's position (ctx.positions), as transformers' position_ids count it under generate."""
from __future__ import annotations

import torch
from torch import nn


class LogPositionGain(nn.Module):
    def __init__(self, n_heads: int):
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(n_heads))  # a_h
        self.bias = nn.Parameter(torch.ones(n_heads))  # b_h

    def init_ssm(self) -> None:  # the generic init sets 1-d weights to one and biases to zero: the reverse
        nn.init.zeros_(self.scale)
        nn.init.ones_(self.bias)

    def forward(self, ctx) -> torch.Tensor:
        """(B|1, H, T, 1), to multiply (B, H, T, D) queries by."""
        pos = (ctx.input_pos[None] if ctx.positions is None else ctx.positions).float()  # (B|1, T)
        gain = self.scale.float()[None, :, None] * torch.log1p(pos)[:, None] + self.bias.float()[None, :, None]
        return gain[..., None]
