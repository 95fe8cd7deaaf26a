"""The residual block. Sequential pre-norm (GPT-2, LLaMA): x += attn(n1(x)); x += ffn(n2(x)).
Sequential post-norm (Vaswani et al. 2017; BERT): x = n1(x + attn(x)); x = n2(x + ffn(x)).
Parallel (GPT-J, PaLM §2): x += attn(n1(x)) + ffn(n2(x))."""
from __future__ import annotations

import torch
from torch import nn

from .attention import Attention, AttentionContext
from .ffn import make_ffn
from .hooks import HookPoint
from .norms import make_norm


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.pre_norm = cfg.norm_placement == "pre"
        self.parallel = cfg.block == "parallel"
        self.ln1, self.attn = make_norm(cfg), Attention(cfg)
        self.ln2, self.mlp = make_norm(cfg), make_ffn(cfg)
        self.drop = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else HookPoint()  # HookPoint: a free identity
        self.hook_resid_pre, self.hook_resid_mid, self.hook_resid_post = HookPoint(), HookPoint(), HookPoint()
        self.hook_attn_out, self.hook_mlp_out = HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:  # x: (B, T, C)
        x = self.hook_resid_pre(x)
        if self.parallel:
            a = self.hook_attn_out(self.drop(self.attn(self.ln1(x), ctx)))
            m = self.hook_mlp_out(self.drop(self.mlp(self.ln2(x))))
            return self.hook_resid_post(x + a + m)
        if self.pre_norm:
            x = self.hook_resid_mid(x + self.hook_attn_out(self.drop(self.attn(self.ln1(x), ctx))))
            return self.hook_resid_post(x + self.hook_mlp_out(self.drop(self.mlp(self.ln2(x)))))
        x = self.hook_resid_mid(self.ln1(x + self.hook_attn_out(self.drop(self.attn(x, ctx)))))
        return self.hook_resid_post(self.ln2(x + self.hook_mlp_out(self.drop(self.mlp(x)))))
