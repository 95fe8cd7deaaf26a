"""Reformer's LSH attention (Kitaev et al. 2020, §3; lsh_attention.py): keys are the unit-normalised queries
(shared QK, so the layer projects no keys) and a query attends to the keys it shares a hash bucket with.
Causal, a query attends to every earlier key it shares a bucket with in some round, so what it sees depends
on earlier positions only and cached decoding computes what a whole sequence does; bidirectional, whole
sequences take Reformer's sorted chunks."""
from __future__ import annotations

from ...errors import LlmarchError
from ..lsh_attention import LSH, causal_lsh_attention, lsh_attention, shared_keys, union_mask
from .kind import ATTENTION_KINDS, AttentionKind, cached_kv


@ATTENTION_KINDS.register("lsh")
class LSHKind(AttentionKind):
    shares_qk = True

    def __init__(self, cfg, layer):
        super().__init__(cfg, layer)
        self.lsh = LSH(cfg.head_dim, cfg.lsh_buckets, cfg.lsh_rounds, cfg.attention_block, cfg.attention_seed + layer)

    @classmethod
    def check(cls, cfg):
        super().check(cfg)
        if cfg.n_kv_heads != cfg.n_heads:
            raise LlmarchError(f"attention={cfg.attention!r} needs n_kv_heads = n_heads")
        if cfg.lsh_buckets < 2 or cfg.lsh_buckets % 2 or cfg.lsh_rounds < 1:
            raise LlmarchError(f"lsh_buckets must be even and >= 2 and lsh_rounds >= 1, got {cfg.lsh_buckets} "
                               f"and {cfg.lsh_rounds}")

    def attend(self, attn, x, q, k, v, ctx, dropout_p):
        q_keys = shared_keys(q)  # the queries' own keys: cached normalised, as Reformer's
        k, v = cached_kv(attn, q_keys, v, ctx)
        scale = q.shape[-1] ** -0.5 if attn.scale is None else attn.scale
        if self.causal:
            return causal_lsh_attention(q, k, v, self.lsh, ctx.input_pos, scale, ctx.pad_mask)
        if q.shape[2] == k.shape[2]:
            return lsh_attention(q, v, self.lsh, False, scale, ctx.pad_mask)
        mask = union_mask(self.lsh, q_keys, k, ctx.input_pos, False, ctx.pad_mask)
        return attn.kernel(q, k, v, mask.to(q.dtype), False, dropout_p, attn.hook_pattern, attn.scale)
