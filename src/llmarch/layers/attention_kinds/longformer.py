"""Longformer (Beltagy et al. 2020, §3.1): the sliding window, plus global tokens (ctx.global_mask) that every
query attends to (with the usual keys, merged into one softmax with the window's) and that attend to every
token through their own projections, qkv_global. A global key is not counted twice: it leaves the window (as
transformers' LongformerSelfAttention does). Without global tokens it is sliding-window attention."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import LlmarchError
from ..linear import Linear
from ..sparse_attention import (SlidingWindow, blockwise_attention, global_key_attention, global_positions,
                                merge_softmax, row_mask)
from .kind import ATTENTION_KINDS, cached_kv
from .pattern import PatternKind


@ATTENTION_KINDS.register("longformer")
class Longformer(PatternKind):
    windowed = True

    @classmethod
    def check(cls, cfg):
        super().check(cfg)
        if cfg.n_kv_heads != cfg.n_heads:
            raise LlmarchError(f"attention={cfg.attention!r} needs n_kv_heads = n_heads")

    def make_pattern(self, cfg, layer):
        return SlidingWindow(cfg.sliding_window, cfg.attention_block)

    def modules(self, cfg, layer):  # the global tokens' own q, k, v projections
        return {"qkv_global": Linear(cfg.d_model, 3 * cfg.n_heads * cfg.head_dim, bias=cfg.qkv_bias)}

    def attend(self, attn, x, q, k, v, ctx, dropout_p):
        if ctx.global_mask is None or not bool(ctx.global_mask.any()):
            return super().attend(attn, x, q, k, v, ctx, dropout_p)
        k, v = cached_kv(attn, k, v, ctx)
        B, H, T, D = q.shape
        S = k.shape[2]
        scale = D ** -0.5 if attn.scale is None else attn.scale
        pad = ctx.pad_mask if ctx.pad_mask is not None else torch.ones(B, S, dtype=torch.bool, device=q.device)
        glob = ctx.global_mask[:, :S] & pad
        if T != S:  # decoding: window rows without the globals, plus the (earlier) global keys
            if bool(glob[:, ctx.input_pos].any()):
                raise LlmarchError("longformer: a new token cannot be global while decoding from a cache")
            mask = row_mask(self.pattern, ctx.input_pos, S, self.causal, pad & ~glob)
            seen = glob[:, None, None, :]
            if self.causal:
                seen = seen & (torch.arange(S, device=q.device) <= ctx.input_pos[:, None])[None, None]
            return attn.kernel(q, k, v, mask | seen, False, dropout_p, attn.hook_pattern, attn.scale)
        local, lse_local = blockwise_attention(q, k, v, self.pattern, self.causal, scale, pad & ~glob, True)
        groups = H // k.shape[1]
        k_all, v_all = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        to_global, lse_global = global_key_attention(q, k_all, v_all, glob, self.causal, scale)
        y = merge_softmax(local, lse_local, to_global, lse_global)
        return self._global_rows(attn, x, y, glob, pad, scale)

    def _global_rows(self, attn, x, y, glob, pad, scale):
        """The global tokens' own rows of y (B, H, T, D): their global query over every (earlier) real key."""
        B, H, T, D = y.shape
        qg, kg, vg = (t.transpose(1, 2) for t in attn.qkv_global(x).view(B, T, 3, H, D).unbind(2))  # (B, H, T, D)
        idx = global_positions(glob)  # (B, G) global positions (+ filler)
        G = idx.shape[1]
        rows = qg.gather(2, idx[:, None, :, None].expand(B, H, G, D))
        allowed = pad[:, None, None, :]
        if self.causal:
            allowed = allowed & (torch.arange(pad.shape[1], device=y.device)[None, None, None, :]
                                 <= idx[:, None, :, None])
        out = F.scaled_dot_product_attention(rows, kg, vg, attn_mask=allowed, scale=scale)  # (B, H, G, D)
        real = glob.gather(1, idx)[:, None, :, None]
        current = y.gather(2, idx[:, None, :, None].expand(B, H, G, D))
        return y.scatter(2, idx[:, None, :, None].expand(B, H, G, D), torch.where(real, out.to(y.dtype), current))
