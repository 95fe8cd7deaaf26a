"""Sliding-window attention (Longformer's local attention, Beltagy et al. 2020; Mistral 7B): query i sees
keys j with |i - j| < w (causal: j in (i - w, i]). A decoded token reads only the window's slots of the
cache, so its cost is bounded by w, not by the context."""
from __future__ import annotations

from ..sparse_attention import SlidingWindow
from .kind import ATTENTION_KINDS
from .pattern import PatternKind


@ATTENTION_KINDS.register("sliding_window")
class SlidingWindowKind(PatternKind):
    windowed = True
    takes_sinks = True

    def make_pattern(self, cfg, layer):
        return SlidingWindow(cfg.sliding_window, cfg.attention_block)

    def attend_rows(self, attn, q, k, v, ctx, dropout_p):
        if not (self.causal and q.shape[2] == 1 and ctx.kv_len is not None):
            return super().attend_rows(attn, q, k, v, ctx, dropout_p)
        start = max(ctx.kv_len - self.pattern.window, 0)
        mask = None if ctx.pad_mask is None else ctx.pad_mask[:, None, None, start:ctx.kv_len]
        return attn.kernel(q, k[:, :, start:], v[:, :, start:], mask, False, dropout_p, attn.hook_pattern,
                           attn.scale, attn.sinks)
