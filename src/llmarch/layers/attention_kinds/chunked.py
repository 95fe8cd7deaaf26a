"""Chunked attention (Meta 2025, Llama 4's RoPE layers; transformers' chunked_causal_mask): positions fall into
chunks of c = attention_chunk, and a query at position p sees only the keys of its own chunk, those at j with
floor(j / c) = floor(p / c) (and j <= p when causal). Positions count from each row's first real token, so a
left-padded row is chunked as it would be alone. A whole unpadded sequence runs blockwise (the pattern over slots,
which then are the positions); a padded batch, or a few queries over a KV cache, take dense mask rows built from
each row's positions. Decoding that only moves forward keeps a ring of c slots (bounded_state, ring_cache.py): a
query's chunk is at most its last c slots, so the ring holds it, and the slots of an earlier chunk still in the
ring are masked by their positions."""
from __future__ import annotations

import torch

from ...errors import LlmarchError
from ..ring_cache import RingKVCache
from ..sparse_attention import Pattern
from .kind import ATTENTION_KINDS, cached_kv
from .pattern import PatternKind


class Chunks(Pattern):
    """Query block b (positions b*block .. (b+1)*block - 1) gathers the keys from the start of its first query's
    chunk to the end of its last query's chunk (to its last query, causal)."""

    def __init__(self, chunk: int, block: int):
        self.chunk, self.block = chunk, block

    def allowed(self, q, k):
        return q // self.chunk == k // self.chunk

    def key_positions(self, n_blocks, causal):
        c, first = self.chunk, torch.arange(n_blocks) * self.block
        start = first // c * c
        end = first + self.block if causal else ((first + self.block - 1) // c + 1) * c
        keys = start[:, None] + torch.arange(int((end - start).max()))
        return torch.where(keys < end[:, None], keys, -1)


@ATTENTION_KINDS.register("chunked")
class ChunkedKind(PatternKind):
    takes_sinks = True

    @classmethod
    def check(cls, cfg):
        super().check(cfg)
        if cfg.attention_chunk <= 0:
            raise LlmarchError(f"attention_chunk must be positive, got {cfg.attention_chunk}")

    def make_pattern(self, cfg, layer):
        return Chunks(cfg.attention_chunk, cfg.attention_block)

    @property
    def cache_note(self) -> str:
        c = self.pattern.chunk
        return f"chunked layers read the keys of their own chunk of {c} tokens, and keep their last {c} when " \
               "generate decodes"

    def bounded_state(self, attn, batch, max_len, dtype, device):
        if not self.causal or max_len <= self.pattern.chunk:
            return self.new_state(attn, batch, max_len, dtype, device)
        return RingKVCache(batch, attn.kv_heads, self.pattern.chunk, attn.head_dim, dtype, device, attn.v_dim)

    def attend(self, attn, x, q, k, v, ctx, dropout_p):
        ring = attn._modules.get("cache")
        if ring is not None and ring.is_ring:
            if q.shape[2] > 1:  # a prompt, from position 0: it attends over its own keys, as without a cache
                if ctx.kv_len != q.shape[2]:
                    raise LlmarchError("a chunked layer's ring cache takes one prompt from position 0, then one "
                                       "token at a time")
                ring.update(ctx.input_pos, k, v)
            else:
                keys, values = ring.update(ctx.input_pos, k, v)
                return attn.kernel(q, keys, values, self.ring_rows(ring, ctx), False, dropout_p,
                                   attn._modules["hook_pattern"], attn.scale, attn.sinks)
        else:
            k, v = cached_kv(attn, k, v, ctx)
        if q.shape[2] == k.shape[2] and ctx.pad_mask is None:  # slots are positions: the pattern, blockwise
            return self.attend_sequence(attn, q, k, v, ctx)
        mask = self.rows(ctx.input_pos, k.shape[2], ctx.pad_mask)
        return attn.kernel(q, k, v, mask, False, dropout_p, attn._modules["hook_pattern"], attn.scale, attn.sinks)

    def ring_rows(self, ring: RingKVCache, ctx) -> torch.Tensor:
        """bool (B|1, 1, 1, c): which of the ring's slots the one query (at slot kv_len - 1) reads: held, real, and
        of the query's chunk by each row's positions."""
        held = ring.key_mask(ctx.pad_mask, ctx.kv_len)
        slot = ring.positions.clamp(min=0)  # empty slots are not held: any index serves them
        if ctx.pad_mask is None:
            pos, now = slot[None], ctx.kv_len - 1
        else:
            count = ctx.pad_mask[:, :ctx.kv_len].long().cumsum(-1)  # (B, S): each row's position + 1 at a slot
            pos, now = count[:, slot] - 1, count[:, -1:] - 1
        return held & self.pattern.allowed(pos, now)[:, None, None, :]

    def rows(self, input_pos: torch.Tensor, key_len: int, pad_mask: torch.Tensor | None) -> torch.Tensor:
        """bool (B|1, 1, T, S): queries at slots input_pos over key slots 0..key_len-1, chunked by each row's
        positions (masks.position_ids' count of real slots), with causality and padding; a padded query sees
        itself, so no row is empty."""
        slots = torch.arange(key_len, device=input_pos.device)
        pos = slots[None] if pad_mask is None else pad_mask[:, :key_len].long().cumsum(-1) - 1  # (B|1, S)
        mask = self.pattern.allowed(pos[:, input_pos, None], pos[:, None, :])  # (B|1, T, S)
        if self.causal:
            mask = mask & (slots <= input_pos[:, None])
        if pad_mask is not None:
            mask = (mask & pad_mask[:, None, :key_len]) | (slots == input_pos[:, None])
        return mask[:, None]
