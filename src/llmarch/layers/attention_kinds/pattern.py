"""What the mask-based sparse kinds share (sparse_attention.py has the patterns and the engine): a whole
sequence runs blockwise, never forming an L x L matrix (FlexAttention block masks on CUDA); a few queries
over a KV cache take their rows of the pattern's mask."""
from __future__ import annotations

from ..sparse_attention import blockwise_attention, flex_sparse_attention, row_mask
from ..sinks import rescale_by_sinks
from .kind import AttentionKind, cached_kv


class PatternKind(AttentionKind):
    softcaps = True

    def __init__(self, cfg, layer: int):
        super().__init__(cfg, layer)
        self.pattern = self.make_pattern(cfg, layer)

    def make_pattern(self, cfg, layer: int):
        raise NotImplementedError

    def attend(self, attn, x, q, k, v, ctx, dropout_p):
        k, v = cached_kv(attn, k, v, ctx)
        if q.shape[2] == k.shape[2]:  # a whole sequence
            return self.attend_sequence(attn, q, k, v, ctx)
        return self.attend_rows(attn, q, k, v, ctx, dropout_p)

    def attend_sequence(self, attn, q, k, v, ctx):
        """A whole sequence, queries and keys at the same positions: blockwise."""
        engine = flex_sparse_attention if q.is_cuda else blockwise_attention
        if attn.sinks is None:
            return engine(q, k, v, self.pattern, self.causal, attn.scale, ctx.pad_mask, softcap=attn.softcap)
        out, lse = engine(q, k, v, self.pattern, self.causal, attn.scale, ctx.pad_mask, return_lse=True,
                          softcap=attn.softcap)
        return rescale_by_sinks(out, lse, attn.sinks)

    def attend_rows(self, attn, q, k, v, ctx, dropout_p):
        """A few queries (at ctx.input_pos) over a cache: the pattern's rows of the mask."""
        mask = row_mask(self.pattern, ctx.input_pos, k.shape[2], self.causal, ctx.pad_mask)
        return attn.kernel(q, k, v, mask, ctx.causal, dropout_p, attn.hook_pattern, attn.scale, attn.sinks)
