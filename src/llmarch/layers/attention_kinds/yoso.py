"""YOSO attention in its expectation form (Zeng et al. 2021, "You Only Sample (Almost) Once: Linear Cost
Self-Attention Via Bernoulli Sampling", §3, eq. 6): with unit queries and keys, the probability that τ random
hyperplanes (a hash of τ bits) put q and k in the same bucket is (1 - θ(q, k)/π)^τ, θ their angle; YOSO's attention
weights are these collision probabilities, unnormalised: y_i = normalise(Σ_j (1 - arccos(q̂_i·k̂_j)/π)^τ v_j), the
output scaled to unit length per head. The sampled form (LSH buckets, linear cost) needs transformers' CUDA kernels;
its expectation, which this computes (T x T, as transformers' `use_expectation`), is what the samples estimate.
τ is yoso_hash_len; value_conv adds the convolution over the (padding-zeroed) values. Padded keys weigh nothing (the
reference code's masks: transformers 5 turns its 0/1 mask into all ones, `int(1 + m / 10000)`, and so attends to
padding). Bidirectional only: no causal form."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import LlmarchError
from .kind import ATTENTION_KINDS, AttentionKind
from .value_conv import check_value_conv, value_conv_modules


@ATTENTION_KINDS.register("yoso")
class Yoso(AttentionKind):
    bidirectional_only = True
    convolves_values = True

    def __init__(self, cfg, layer: int):
        super().__init__(cfg, layer)
        if cfg.causal:
            raise LlmarchError("attention='yoso' is bidirectional (an encoder's)")
        self.tau = cfg.yoso_hash_len

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        if cfg.yoso_hash_len <= 0 or cfg.n_kv_heads != cfg.n_heads:
            raise LlmarchError(f"attention='yoso' needs yoso_hash_len > 0 (got {cfg.yoso_hash_len}) and n_kv_heads = "
                               "n_heads")
        check_value_conv(cfg, "yoso")

    def modules(self, cfg, layer: int) -> dict[str, nn.Module]:
        return value_conv_modules(cfg)

    def new_state(self, attn, batch: int, max_len: int, dtype: torch.dtype, device):
        raise LlmarchError("attention='yoso' runs over whole sequences (an encoder's), not a cache")

    def attend(self, attn, x, q, k, v, ctx, dropout_p):  # q, k, v (B, H, T, D)
        B, H, T, D = q.shape
        real = torch.ones(B, T, dtype=q.dtype, device=q.device) if ctx.pad_mask is None else \
            ctx.pad_mask[:, :T].to(q.dtype)
        cos = (F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-1, -2)).clamp(-1.0, 1.0)  # (B, H, T, T)
        weights = (1 - torch.acos(cos) / math.pi) ** self.tau * real[:, None, None, :]
        y = F.normalize(weights @ v, dim=-1)
        conv = attn._modules.get("conv")
        return y if conv is None else y + conv(v * real[:, None, :, None])
