"""Disentangled attention (He et al. 2021, "DeBERTa", §3.1, eq. 4): a token is its content and, apart, its
relative positions, so the score of query i on key j is the content-to-content term plus
    c2p: Q^c_i . K^r_delta(i,j)   (content-to-position: the query against the key's relative position)
    p2c: K^c_j . Q^r_delta(i,j)   (position-to-content: the key against the query's relative position)
with K^r = P W_k,r and Q^r = P W_q,r the shared relative embeddings P (positions 'relative_embeddings',
ctx.relative) projected by this layer, and the sum scaled by 1/sqrt(D (1 + terms)) (eq. 4's 1/sqrt(3d) with both
terms). The paper indexes p2c by delta(j, i); the authors' code, and transformers', by delta(i, j) as here.
disentangled_terms picks the terms (DeBERTa's pos_att_type); disentangled_shared_proj projects P with the layer's
own query and key weights and biases (DeBERTa-v2/v3's share_att_key), else with pos_key_proj / pos_query_proj
(pos_key_proj without a bias where disentangled_key_bias is False: DeBERTa v1).
Shapes: B batch, H heads, T queries, S keys, D head dim, R = 2k relative embeddings."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import LlmarchError
from ..linear import Linear
from .kind import ATTENTION_KINDS, AttentionKind, cached_kv

TERMS = ("c2p", "p2c", "c2p+p2c")


@ATTENTION_KINDS.register("disentangled")
class Disentangled(AttentionKind):
    uses_mask = True
    needs_positions = "relative_embeddings"

    def __init__(self, cfg, layer):
        super().__init__(cfg, layer)
        self.c2p, self.p2c = "c2p" in cfg.disentangled_terms, "p2c" in cfg.disentangled_terms
        self.shared = cfg.disentangled_shared_proj
        self.scale = (cfg.head_dim * (1 + self.c2p + self.p2c)) ** -0.5

    @classmethod
    def check(cls, cfg):
        super().check(cfg)
        if cfg.disentangled_terms not in TERMS:
            raise LlmarchError(f"unknown disentangled_terms {cfg.disentangled_terms!r}; choose one of: "
                               f"{', '.join(TERMS)}")
        if cfg.n_kv_heads != cfg.n_heads or cfg.attn_scale is not None:
            raise LlmarchError("attention='disentangled' needs n_kv_heads = n_heads and no attn_scale (it scales by "
                               "1/sqrt(head_dim * (1 + terms)))")
        if cfg.disentangled_shared_proj and not cfg.disentangled_key_bias:
            raise LlmarchError("disentangled_key_bias=False goes with disentangled_shared_proj=False (shared "
                               "projections take the key projection's bias)")
        if cfg.relative_buckets % 2 or (cfg.relative_log_buckets and not 4 <= cfg.relative_buckets
                                        < 2 * cfg.relative_max_distance):
            raise LlmarchError(f"relative_embeddings need an even relative_buckets (2k), and with log buckets "
                               f"4 <= 2k < 2 * relative_max_distance (got {cfg.relative_buckets} and "
                               f"{cfg.relative_max_distance})")

    def modules(self, cfg, layer):
        if cfg.disentangled_shared_proj:
            return {}
        width, out = cfg.n_heads * cfg.head_dim, {}
        if "c2p" in cfg.disentangled_terms:
            out["pos_key_proj"] = Linear(cfg.d_model, width, bias=cfg.disentangled_key_bias)
        if "p2c" in cfg.disentangled_terms:
            out["pos_query_proj"] = Linear(cfg.d_model, width)
        return out

    def _projected(self, attn, table: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The relative embeddings (R, C) as queries and keys, (H, R, D) each (None: a term not taken)."""
        H, D = attn.n_heads, attn.head_dim
        if self.shared:  # the q and k rows of the fused projection (layers/attention.py)
            w, b = attn.qkv_proj.weight[: 2 * H * D], attn.qkv_proj.bias
            pq, pk = F.linear(table, w, None if b is None else b[: 2 * H * D]).chunk(2, dim=-1)
        else:
            pq = attn.pos_query_proj(table) if self.p2c else None
            pk = attn.pos_key_proj(table) if self.c2p else None
        heads = [None if p is None else p.view(-1, H, D).transpose(0, 1) for p in (pq, pk)]
        return heads[0] if self.p2c else None, heads[1] if self.c2p else None

    def attend(self, attn, x, q, k, v, ctx, dropout_p):
        k, v = cached_kv(attn, k, v, ctx)
        table, delta = ctx.relative  # (R, C), (T, S)
        T, S = delta.shape
        pq, pk = self._projected(attn, table.to(q.dtype))
        B, H = q.shape[:2]
        bias = q.new_zeros(B, H, T, S)
        if self.c2p:  # query i against the position of key j relative to it
            bias = bias + torch.gather(q @ pk.transpose(-1, -2), -1, delta.expand(B, H, T, S))
        if self.p2c:  # key j against the position of query i: (B, H, S, R) read at delta transposed
            p2c = torch.gather(k @ pq.transpose(-1, -2), -1, delta.t().expand(B, H, S, T))
            bias = bias + p2c.transpose(-1, -2)
        bias = bias * self.scale
        mask = ctx.mask
        if mask is None and ctx.causal:
            mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)
        if mask is not None:
            bias = bias.masked_fill(~mask, float("-inf"))
        return attn.kernel(q, k, v, bias, False, dropout_p, attn._modules["hook_pattern"], self.scale)
