"""Encoder-decoder ("cross") attention (Vaswani et al. 2017, §3.2.3): queries come from the decoder, keys and
values from the encoder output ("memory"). The memory is fixed for a whole generation, so its keys and values
are projected once (`set_memory`) and every decode step reuses them; without that, they are projected from
ctx.memory on each call (training, full forward). Same kernels, scale and hooks as self-attention, except that a
hook on hook_pattern is always served: the explicit softmax(QK^T) kernel runs while one is attached (SDPA returns no
weights), as word timestamps read the alignment heads' weights (generate/whisper_alignment.py); none attached, the
configured kernel runs."""
from __future__ import annotations

import torch
from torch import nn

from .attention import AttentionContext, attention_setup, eager_attention, split_heads
from .hooks import HookPoint
from .linear import Linear


class CrossAttention(nn.Module):
    residual_out = ("o_proj.weight",)

    def __init__(self, cfg, memory_width: int | None = None):
        super().__init__()
        attention_setup(self, cfg)
        kv = self.n_kv_heads * self.head_dim
        self.q_proj = Linear(cfg.d_model, self.n_heads * self.head_dim, bias=cfg.qkv_bias)
        # k and v fused (rows: k, then v), over memory memory_width wide (None: d_model)
        self.kv_proj = Linear(memory_width or cfg.d_model, 2 * kv, bias=cfg.qkv_bias)
        self.o_proj = Linear(self.n_heads * self.head_dim, cfg.d_model, bias=cfg.o_bias)
        self.hook_pattern, self.hook_z = HookPoint(), HookPoint()
        self.memory_kv: tuple[torch.Tensor, torch.Tensor] | None = None

    def project_memory(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S, C) encoder output -> keys, values (B, K, S, D)."""
        k, v = self.kv_proj(memory).chunk(2, dim=-1)
        return split_heads(k, self.n_kv_heads, self.head_dim), split_heads(v, self.n_kv_heads, self.head_dim)

    def set_memory(self, memory: torch.Tensor | None) -> None:
        """Project `memory` once for the decode steps that follow; None forgets it."""
        self.memory_kv = None if memory is None else self.project_memory(memory)

    def forward(self, x: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        B, T, _ = x.shape
        q = split_heads(self.q_proj(x), self.n_heads, self.head_dim)  # (B, H, T, D)
        if ctx.memory is not None:
            k, v = self.project_memory(ctx.memory)
        elif self.memory_kv is not None:
            k, v = self.memory_kv
        else:
            raise RuntimeError("cross-attention needs ctx.memory or a set_memory() call")
        dropout_p = self.dropout if self.training else 0.0
        kernel = eager_attention if self.hook_pattern.active and self.softcap is None else self.kernel
        y = kernel(q, k, v, ctx.memory_mask, False, dropout_p, self.hook_pattern, self.scale)
        y = self.hook_z(y.transpose(1, 2))  # (B, T, H, D)
        return self.o_proj(y.reshape(B, T, self.n_heads * self.head_dim))
