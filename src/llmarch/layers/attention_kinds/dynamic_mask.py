"""Dynamic mask attention (Doge; Shi et al. 2024, "Wonderful Matrices: Combining for a More Efficient and Effective
Foundation Model Architecture", arXiv 2412.11834): each key position j gets a bias per KV head computed from its
value vector, which the softmax adds to every query's score for it, and once there are more than dma_keep keys each
query keeps only its dma_keep keys of the highest bias (the others masked): a learned, content-dependent sparse mask
in place of a fixed window.

    m_j = exp(A * softplus(v_j W_dt + b_dt))          (B, K, S): v_j all K heads' values at j, A (K,) learned
    scores = q k^T * scale + m (every query, each head its KV head's m), causal and padding masked;
    S > dma_keep: per query, all but the dma_keep best of m (+ the mask) masked too

The bias reads the values, so it is recomputed from the cached values at each step: no state beyond the KV cache.
Equal biases are common (in the first layer, a token's value vector is its embedding's, so a repeated token's keys
tie): of equal ones the earliest key is kept, so a decoding step keeps what the whole forward keeps where both
compute a repeated token's value to the same bits. transformers' torch.topk leaves the choice among ties to the
kernel, which picks otherwise as the row's length changes. Not every BLAS gives the same bits: on an AMD EPYC a value
computed in a prefill of many rows and in a step of one differed in its last bit, and the step then kept another of
the tied keys (logits 0.06 apart); no rounding of the biases separates that from real differences of 1e-5.
Shapes: B batch, H query heads, K KV heads, T queries, S keys, D head_dim."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import LlmarchError
from ..linear import Linear
from ..positions import BIAS_POSITIONS
from .kind import ATTENTION_KINDS, AttentionKind, cached_kv


class DynamicMask(nn.Module):
    """A (K,) and the projection W_dt of all K heads' values (K x D) to one bias per KV head."""

    def __init__(self, cfg):
        super().__init__()
        self.A = nn.Parameter(torch.zeros(cfg.n_kv_heads))
        self.dt_proj = Linear(cfg.n_kv_heads * cfg.head_dim, cfg.n_kv_heads, bias=cfg.qkv_bias)

    def init_ssm(self) -> None:
        """The stack's init hook (which sets 1-D weights to 1): A back to 0, every bias exp(0) = 1 at init."""
        nn.init.zeros_(self.A)

    def forward(self, v: torch.Tensor) -> torch.Tensor:  # v (B, K, S, D) -> (B, K, S)
        B, K, S, D = v.shape
        dt = self.dt_proj(v.transpose(1, 2).reshape(B, S, K * D))  # (B, S, K)
        return torch.exp(self.A * F.softplus(dt)).transpose(1, 2)


@ATTENTION_KINDS.register("dynamic_mask")
class DynamicMaskAttention(AttentionKind):
    uses_mask = True

    def __init__(self, cfg, layer: int):
        super().__init__(cfg, layer)
        self.keep = cfg.dma_keep

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        if cfg.dma_keep <= 0:
            raise LlmarchError(f"dma_keep must be positive, got {cfg.dma_keep}")
        if not cfg.causal or cfg.positions in BIAS_POSITIONS:
            raise LlmarchError("attention='dynamic_mask' is causal and takes no position bias (its own bias is the "
                               f"dynamic mask), got causal={cfg.causal}, positions={cfg.positions!r}")

    def modules(self, cfg, layer):
        return {"dma": DynamicMask(cfg)}

    def attend(self, attn, x, q, k, v, ctx, dropout_p):
        k, v = cached_kv(attn, k, v, ctx)
        B, H, T, _ = q.shape
        S = k.shape[2]
        m = attn._modules["dma"](v)[:, :, None, :].expand(-1, -1, T, -1)  # (B, K, T, S)
        allowed = ctx.mask
        if allowed is None:  # plain causal, T == S
            allowed = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)
        # the lowest finite value, not -inf, as transformers masks: a fully masked (padding) row stays finite
        low = torch.finfo(m.dtype).min
        m = m.masked_fill(~allowed, low)
        if S > self.keep:  # each query keeps its dma_keep keys of the highest bias, of equal ones the earliest
            best = m.sort(dim=-1, descending=True, stable=True).indices[..., :self.keep]
            m = m.masked_fill(~torch.zeros_like(m, dtype=torch.bool).scatter_(-1, best, True), low)
        m = m.repeat_interleave(H // m.shape[1], dim=1)  # (B, H, T, S): head h reads KV head h // groups's
        return attn.kernel(q, k, v, m.to(q.dtype), False, dropout_p, attn._modules["hook_pattern"], attn.scale, None)
