"""LongT5's local attention (Guo et al. 2022, "LongT5: Efficient Text-To-Text Transformer for Long Sequences",
§3.1.1): each token attends to the keys within sliding_window - 1 positions of it on either side (causal: before
it), the sliding window's pattern, but through the dense mask the model builds, so a position bias in that mask
(T5's relative bias, computed once per stack) enters the scores as it does in full attention. It forms the whole
T x S score matrix, the price of taking the model's mask; `sliding_window` runs blockwise without one."""
from __future__ import annotations

import torch

from .kind import ATTENTION_KINDS, AttentionKind, cached_kv


@ATTENTION_KINDS.register("local")
class Local(AttentionKind):
    uses_mask = True
    windowed = True
    takes_sinks = True
    softcaps = True

    def __init__(self, cfg, layer: int):
        super().__init__(cfg, layer)
        self.window = cfg.sliding_window

    def attend(self, attn, x, q, k, v, ctx, dropout_p):
        k, v = cached_kv(attn, k, v, ctx)
        mask = self.window_mask(ctx, k.shape[2])
        return attn.kernel(q, k, v, mask, False, dropout_p, attn._modules["hook_pattern"], attn.scale, attn.sinks)

    def window_mask(self, ctx, key_len: int) -> torch.Tensor:
        """The model's mask (bool, or float with the bias) limited to the window: (B|1, H|1, T, S)."""
        keys = torch.arange(key_len, device=ctx.input_pos.device)
        offset = ctx.input_pos[:, None] - keys[None, :]  # (T, S): query slot - key slot
        near = offset.abs() < self.window
        if ctx.mask is None and ctx.causal:  # plain causal: the model left the triangle to the kernel
            near = near & (offset >= 0)
        if ctx.mask is None:  # (1, 1, T, S), as a model's mask is (the sinks' extra key column expects four dims)
            return near[None, None]
        if ctx.mask.dtype == torch.bool:  # a padded query still sees itself: no row without keys (NaN)
            return (ctx.mask & near) | (offset == 0)
        mask = ctx.mask.masked_fill(~near, float("-inf"))
        return mask.masked_fill((offset == 0) & mask.isinf(), 0.0)
