"""Reformer's two attention kinds as transformers computes them (Kitaev et al. 2020; reformer_chunks.py):
lsh_chunks (shared-QK LSH attention over sorted chunks) and local_chunks (attention within positional chunks), each
over attention_chunk slots with chunks_before / chunks_after neighbouring chunks, padded as attention_pad_multiple
and attention_pad_above say.

Decoding: the KV cache holds the keys as projected (lsh_chunks: the shared query-keys, normalised when attended), and
a step's queries attend as they would at the end of a whole forward over the cached slots. Local chunks are causal
(a query's keys are the earlier slots of its own and the previous chunks), so decoding equals the whole forward.
Sorted chunks are causal only while the sequence fits one chunk: beyond it, which earlier keys share a query's
chunk depends on where later tokens hash, so a step computes what a whole forward over its prefix gives its last
token, which the whole forward over a longer sequence need not give that token (transformers' own cached decoding
differs from both)."""
from __future__ import annotations

import torch

from ...errors import LlmarchError
from ..reformer_chunks import attend, local_chunks, lsh_chunks, padded_length, rotations
from .kind import ATTENTION_KINDS, AttentionKind, cached_kv


class ReformerKind(AttentionKind):
    def __init__(self, cfg, layer: int):
        super().__init__(cfg, layer)
        self.chunk, self.before, self.after = cfg.attention_chunk, cfg.chunks_before, cfg.chunks_after
        self.pad = (cfg.attention_pad_multiple, cfg.attention_pad_above)

    @classmethod
    def check(cls, cfg):
        super().check(cfg)
        if cfg.n_kv_heads != cfg.n_heads:
            raise LlmarchError(f"attention={cfg.attention!r} needs n_kv_heads = n_heads")
        if cfg.attention_chunk <= 0 or cfg.chunks_before < 0 or cfg.chunks_after < 0 or cfg.attention_pad_multiple < 0:
            raise LlmarchError(f"attention={cfg.attention!r} needs attention_chunk > 0 and chunks_before, "
                               f"chunks_after, attention_pad_multiple >= 0, got {cfg.attention_chunk}, "
                               f"{cfg.chunks_before}, {cfg.chunks_after}, {cfg.attention_pad_multiple}")
        if cfg.causal and cfg.chunks_after:
            raise LlmarchError(f"a causal stack's {cfg.attention} attention reads no later chunks: chunks_after "
                               f"must be 0, got {cfg.chunks_after}")

    def attend(self, attn, x, q, k, v, ctx, dropout_p):
        if attn._modules.get("cache") is not None and ctx.kv_len is None:
            raise LlmarchError(f"{self.name} attention decodes eagerly (kv_len): its chunks depend on how many "
                               "cache slots are filled")
        keys, values = cached_kv(attn, self.keys(q, k), v, ctx)
        S = keys.shape[2]
        real = None if ctx.pad_mask is None else ctx.pad_mask[:, :S]
        if q.shape[2] == S:
            return self.whole(keys if self.shares_qk else q, keys, values, real, ctx.hashes)
        return self.step(q, keys, values, real, ctx.input_pos)

    def keys(self, q, k):
        return k


@ATTENTION_KINDS.register("lsh_chunks")
class LSHChunks(ReformerKind):
    shares_qk = True
    name = "lsh_chunks"

    def __init__(self, cfg, layer: int):
        super().__init__(cfg, layer)
        self.buckets = cfg.lsh_buckets
        self.rotations = rotations(cfg.n_heads, cfg.head_dim, cfg.lsh_rounds, cfg.lsh_buckets, cfg.attention_seed)

    @classmethod
    def check(cls, cfg):
        super().check(cfg)
        if cfg.lsh_buckets < 2 or cfg.lsh_buckets % 2 or cfg.lsh_rounds < 1:
            raise LlmarchError(f"lsh_buckets must be even and >= 2 and lsh_rounds >= 1, got {cfg.lsh_buckets} "
                               f"and {cfg.lsh_rounds}")

    def keys(self, q, k):
        return q  # shared QK: the layer projects no keys

    def whole(self, q, k, v, real, hashes=None):
        return lsh_chunks(k, v, real, self.rotations, self.buckets, self.chunk, self.before, self.after, self.causal,
                          *self.pad, hashes=hashes)

    def step(self, q, k, v, real, input_pos):
        """Queries at slots input_pos after the cached slots before them: the whole forward over the cache, those
        rows (the cache holds their own query-keys)."""
        return self.whole(k, k, v, real)[:, :, input_pos]


@ATTENTION_KINDS.register("local_chunks")
class LocalChunks(ReformerKind):
    name = "local_chunks"

    def whole(self, q, k, v, real, hashes=None):  # hashes: LSH's (AttentionContext.hashes); local chunks hash nothing
        return local_chunks(q, k, v, real, self.chunk, self.before, self.after, self.causal, *self.pad)

    def step(self, q, k, v, real, input_pos):
        """Causal queries at slots input_pos over the cached slots: each reads the earlier slots of its own chunk
        and the chunks_before before it (the whole sequence when it fits one chunk, as the whole forward does)."""
        S = k.shape[2]
        slots = torch.arange(S, device=k.device)
        near = torch.ones((), dtype=torch.bool, device=k.device)
        if padded_length(S, *self.pad, self.chunk) > self.chunk:
            near = input_pos[:, None] // self.chunk - slots // self.chunk <= self.before
        keys_real = near if real is None else near & real[:, None, None, :]
        out, _ = attend(q, k / k.shape[-1] ** 0.5, v, input_pos, slots, keys_real, True, False)
        return out
