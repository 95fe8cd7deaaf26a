"""Sliding-window attention (Longformer's local attention, Beltagy et al. 2020; Mistral 7B): query i sees
keys j with |i - j| < w (causal: j in (i - w, i]). A decoded token reads only the window's slots of the
cache, so its cost is bounded by w, not by the context; decoding that only moves forward keeps just those w
slots (bounded_state: a ring, ring_cache.py). A call with bidirectional blocks (config bidirectional_token: Gemma
3's images, token_blocks.py) attends through a dense mask of its queries' rows."""
from __future__ import annotations

import torch

from ...errors import LlmarchError
from ..ring_cache import RingKVCache
from ..sparse_attention import SlidingWindow
from ..token_blocks import same_block
from .kind import ATTENTION_KINDS
from .pattern import PatternKind


@ATTENTION_KINDS.register("sliding_window")
class SlidingWindowKind(PatternKind):
    windowed = True
    takes_sinks = True
    own_value_width = True

    def make_pattern(self, cfg, layer):
        return SlidingWindow(cfg.sliding_window, cfg.attention_block, cfg.window_ahead)

    @property
    def cache_note(self) -> str:
        return f"window layers keep their last {self.pattern.window} tokens when generate decodes"

    def bounded_state(self, attn, batch, max_len, dtype, device):
        if not self.causal or max_len <= self.pattern.window:
            return self.new_state(attn, batch, max_len, dtype, device)
        return RingKVCache(batch, attn.kv_heads, self.pattern.window, attn.head_dim, dtype, device, attn.v_dim)

    def attend(self, attn, x, q, k, v, ctx, dropout_p):
        ring = attn._modules.get("cache")
        if not (ring is not None and ring.is_ring):  # a ring of its own, or an earlier layer's (SharedKV)
            return super().attend(attn, x, q, k, v, ctx, dropout_p)
        if q.shape[2] > 1:  # a prompt, from position 0: it attends over its own keys, as without a cache
            if ctx.kv_len != q.shape[2]:
                raise LlmarchError("a sliding window's ring cache takes one prompt from position 0, then one "
                                   "token at a time")
            ring.update(ctx.input_pos, k, v)
            return self.attend_sequence(attn, q, k, v, ctx)
        keys, values = ring.update(ctx.input_pos, k, v)  # the last w positions, this one among them
        return attn.kernel(q, keys, values, ring.key_mask(ctx.pad_mask, ctx.kv_len), False, dropout_p,
                           attn.hook_pattern, attn.scale, attn.sinks)

    def attend_sequence(self, attn, q, k, v, ctx):
        if ctx.blocks is None:
            return super().attend_sequence(attn, q, k, v, ctx)
        return self.attend_blocks(attn, q, k, v, ctx)

    def attend_blocks(self, attn, q, k, v, ctx):
        """Queries over keys at slots 0..S-1 with bidirectional blocks (ctx.blocks, config bidirectional_token):
        a dense mask, the window's keys behind that are causal or in the query's block, then padding (transformers'
        sliding overlay AND (causal OR block))."""
        keys = torch.arange(k.shape[2], device=q.device)
        qpos = ctx.input_pos[:, None]
        mask = (qpos - keys < self.pattern.window) & ((keys <= qpos) | same_block(ctx.blocks, ctx.input_pos,
                                                                                   k.shape[2]))  # (B, T, S)
        if ctx.pad_mask is not None:
            mask = (mask & ctx.pad_mask[:, None, :k.shape[2]]) | (qpos == keys)
        return attn.kernel(q, k, v, mask[:, None], False, 0.0, attn.hook_pattern, attn.scale, attn.sinks)

    def attend_rows(self, attn, q, k, v, ctx, dropout_p):
        if ctx.blocks is not None:
            return self.attend_blocks(attn, q, k, v, ctx)
        if not (self.causal and q.shape[2] == 1 and ctx.kv_len is not None):
            return super().attend_rows(attn, q, k, v, ctx, dropout_p)
        start = max(ctx.kv_len - self.pattern.window, 0)
        mask = None if ctx.pad_mask is None else ctx.pad_mask[:, None, None, start:ctx.kv_len]
        return attn.kernel(q, k[:, :, start:], v[:, :, start:], mask, False, dropout_p, attn.hook_pattern,
                           attn.scale, attn.sinks)
