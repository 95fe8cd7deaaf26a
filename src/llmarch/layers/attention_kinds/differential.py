"""Differential attention (Ye et al. 2024, "Differential Transformer", arXiv 2410.05258, §2.1): each pair of
query heads (i, i + H/2) with its keys gives two softmax maps, and the head attends with their difference, which
cancels the attention noise both maps share (eq. 1):

    DiffAttn(X) = (softmax(Q1 K1^T / sqrt(d)) - lambda * softmax(Q2 K2^T / sqrt(d))) V,

V of 2d channels: KV head j's values beside KV head j + K/2's. lambda is re-parameterised per layer (eq. 2),
lambda = exp(lambda_q1 . lambda_k1) - exp(lambda_q2 . lambda_k2) + lambda_init, lambda_init = 0.8 - 0.6 exp(-0.3 l)
at (0-based) layer l; each head's 2d outputs go through an RMS norm without a gain (GroupNorm, eq. 3) and times
(1 - lambda_init). Heads then sit as H/2 of 2d channels each, so o_proj reads H x d as usual.
The pairing is transformers' DiffLlamaAttention's: the values split along KV heads, and query heads h and h + H/2
are the two maps of pair h. Shapes: B batch, H query heads, K KV heads, T queries, S keys, D head_dim."""
from __future__ import annotations

import math

import torch
from torch import nn

from ...errors import LlmarchError
from ..norms import rms_normalize
from .kind import ATTENTION_KINDS, AttentionKind, cached_kv

LAMBDA_STD = 0.1  # the lambda vectors' init, N(0, 0.1) (the paper's code; transformers' lambda_std_dev)


def lambda_init(layer: int) -> float:
    """lambda_init at 0-based layer l (Ye et al. 2024, §2.1): 0.8 - 0.6 exp(-0.3 l)."""
    return 0.8 - 0.6 * math.exp(-0.3 * layer)


class DiffLambda(nn.Module):
    """The four learnable d-vectors of eq. 2, shared by the layer's heads."""

    def __init__(self, head_dim: int, init: float):
        super().__init__()
        self.lambda_q1, self.lambda_k1, self.lambda_q2, self.lambda_k2 = (
            nn.Parameter(torch.zeros(head_dim)) for _ in range(4))
        self.init = init

    def init_ssm(self) -> None:
        for p in self.parameters():
            nn.init.normal_(p, 0.0, LAMBDA_STD)

    def forward(self) -> torch.Tensor:  # () fp32
        one = torch.exp((self.lambda_q1 * self.lambda_k1).sum(dtype=torch.float32))
        two = torch.exp((self.lambda_q2 * self.lambda_k2).sum(dtype=torch.float32))
        return one - two + self.init


@ATTENTION_KINDS.register("differential")
class Differential(AttentionKind):
    uses_mask = True

    def __init__(self, cfg, layer: int):
        super().__init__(cfg, layer)
        self.init, self.eps = lambda_init(layer), cfg.norm_eps

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        if cfg.n_kv_heads % 2:
            raise LlmarchError(f"attention='differential' splits the values along KV heads: n_kv_heads must be "
                               f"even, got {cfg.n_kv_heads}")
        if cfg.attn_output_gate:
            raise LlmarchError("attention='differential' with attn_output_gate is not supported")

    def modules(self, cfg, layer):
        return {"diff": DiffLambda(cfg.head_dim, lambda_init(layer))}

    def attend(self, attn, x, q, k, v, ctx, dropout_p):
        k, v = cached_kv(attn, k, v, ctx)
        B, H, T, D = q.shape
        K = v.shape[1]
        halves = v.unflatten(1, (2, K // 2))  # (B, 2, K/2, S, D)
        pairs = torch.cat((halves[:, 0], halves[:, 1]), dim=-1).repeat(1, 2, 1, 1)  # (B, K, S, 2D)
        y = attn.kernel(q, k, pairs, ctx.mask, ctx.causal, dropout_p, attn._modules["hook_pattern"], attn.scale,
                        None)  # (B, H, T, 2D): every head's map times its pair's values
        lam = attn._modules["diff"]().to(y.dtype)
        y = y[:, : H // 2] - lam * y[:, H // 2:]  # (B, H/2, T, 2D), eq. 1
        y = rms_normalize(y, self.eps) * (1 - self.init)  # eq. 3
        return y.unflatten(-1, (2, D)).transpose(2, 3).reshape(B, H, T, D)  # head 2i + j: pair i's j-th half
