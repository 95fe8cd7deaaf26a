"""A cross-attention block: N queries of one width read M inputs of another, each side through a norm of its own, then
an FFN on the queries' side (Perceiver IO, Jaegle et al. 2021, "Perceiver IO: A General Architecture for Structured
Inputs & Outputs", §2 and appendix; transformers' PerceiverLayer with is_cross_attention):

    h = W_o attn(W_q norm_q(x), W_k norm_kv(m), W_v norm_kv(m))   (+ x where query_residual)
    y = h + FFN(norm(h))

Perceiver IO's encoder reads the inputs into its latents with one; its decoder reads the latents back into one query
per output position with another, without the query residual (its queries are positions, not states). Same kernels,
scale and hooks as self-attention (attention.py). Shapes: B batch, N queries, M inputs, H heads, D the q and k width
of a head, Dv its values'."""
from __future__ import annotations

import torch
from torch import nn

from .attention import attention_setup, split_heads
from .ffn_factory import make_ffn
from .hooks import HookPoint
from .linear import Linear
from .norms import make_norm


class CrossBlock(nn.Module):
    residual_out = ("o_proj.weight",)

    def __init__(self, cfg, memory_width: int):
        """cfg: the queries' side (d_model their width, the heads, FFN and norms); memory_width: the inputs'."""
        super().__init__()
        attention_setup(self, cfg)
        H, K, D, d = self.n_heads, self.n_kv_heads, self.head_dim, cfg.d_model
        self.query_residual = cfg.query_residual
        self.q_norm, self.kv_norm = make_norm(cfg), make_norm(cfg, memory_width)
        self.q_proj = Linear(d, H * D, bias=cfg.qkv_bias)
        self.k_proj = Linear(memory_width, K * D, bias=cfg.qkv_bias)
        self.v_proj = Linear(memory_width, K * self.v_dim, bias=cfg.qkv_bias)
        self.o_proj = Linear(H * self.v_dim, d, bias=cfg.o_bias)
        self.ln2, self.mlp = make_norm(cfg), make_ffn(cfg)
        self.hook_pattern, self.hook_z = HookPoint(), HookPoint()

    def macs(self, queries: float, inputs: float) -> float:
        """Multiply-adds of a forward of `queries` rows over `inputs` rows (analysis/accounting.py): the queries'
        side (q_proj, o_proj, FFN, their norms) once a query, the keys' and values' once an input, and q.k and
        pattern.v once a pair."""
        memory = sum(p.numel() for m in (self.kv_norm, self.k_proj, self.v_proj) for p in m.parameters())
        query = sum(p.numel() for p in self.parameters()) - memory
        return query * queries + memory * inputs + queries * inputs * self.n_heads * (self.head_dim + self.v_dim)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, N, C) queries, memory (B, M, C_m) inputs, memory_mask (B, M) 1 at real inputs -> (B, N, C)."""
        B, N, _ = x.shape
        m = self.kv_norm(memory)
        q = split_heads(self.q_proj(self.q_norm(x)), self.n_heads, self.head_dim)  # (B, H, N, D)
        k = split_heads(self.k_proj(m), self.n_kv_heads, self.head_dim)  # (B, K, M, D)
        v = split_heads(self.v_proj(m), self.n_kv_heads, self.v_dim)  # (B, K, M, Dv)
        mask = None if memory_mask is None else memory_mask.bool()[:, None, None, :]  # (B, 1, 1, M)
        dropout_p = self.dropout if self.training else 0.0
        y = self.kernel(q, k, v, mask, False, dropout_p, self.hook_pattern, self.scale)
        h = self.o_proj(self.hook_z(y.transpose(1, 2)).reshape(B, N, -1))  # (B, N, C)
        h = h + x if self.query_residual else h
        return h + self.mlp(self.ln2(h))
