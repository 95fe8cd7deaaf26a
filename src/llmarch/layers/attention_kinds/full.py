"""Full softmax attention (Vaswani et al. 2017, eq. 1) over every key the mask allows: causality, padding,
and a position bias (T5, ALiBi) all arrive in ctx.mask, built once per forward by the model."""
from __future__ import annotations

from .kind import ATTENTION_KINDS, AttentionKind, cached_kv


@ATTENTION_KINDS.register("full")
class Full(AttentionKind):
    uses_mask = True
    takes_sinks = True
    softcaps = True
    own_value_width = True

    def attend(self, attn, x, q, k, v, ctx, dropout_p):
        k, v = cached_kv(attn, k, v, ctx)  # the hook point from _modules: not nn.Module's slower attribute fallback
        return attn.kernel(q, k, v, ctx.mask, ctx.causal, dropout_p, attn._modules["hook_pattern"], attn.scale,
                           attn.sinks)
