"""Transformer-XL's relative attention (Dai et al. 2019, §3.3) with XLNet's segment term (Yang et al. 2019, §2.5):
the score of query i on key j is

    (q_i + u) . k_j  +  (q_i + v) . W_r R_{i-j}  +  (q_i + b) . s_{ij},   times 1/sqrt(D)

content, position (R: the sinusoid of the distance, positions 'relative_sinusoidal', ctx.relative, projected by this
layer's W_r: r_proj) and segment (s_ij: one of two learned vectors, seg_embed[0] where i and j share a segment,
seg_embed[1] where they do not; the segments are ctx.token_type_ids). u, v, b are learned per head (XLNet's r_w_bias,
r_r_bias, r_s_bias), held with seg_embed on `rel`. Without segment ids the segment term is left out, as transformers
does (one segment would add the same (q_i + b) . s_0 to every key of a row, which the softmax cancels). A query always
sees its own key (XLNet's content stream), padding or not. In a causal stack this is XLNet's content stream under the
perm_mask of the natural order (query i sees keys j <= i); XLNet's query stream (g) is not built.
Shapes: B batch, H heads, T queries, S keys, D head dim, R = 2S - 1 distances."""
from __future__ import annotations

import torch
from torch import nn

from ...errors import LlmarchError
from ..linear import Linear
from .kind import ATTENTION_KINDS, AttentionKind, cached_kv


@ATTENTION_KINDS.register("xl_relative")
class XLRelative(AttentionKind):
    uses_mask = True
    needs_positions = "relative_sinusoidal"

    @classmethod
    def check(cls, cfg):
        super().check(cfg)
        if cfg.n_kv_heads != cfg.n_heads:
            raise LlmarchError("attention='xl_relative' needs n_kv_heads = n_heads (XLNet's heads)")
        if cfg.relative_clamp is not None and cfg.relative_clamp <= 0:
            raise LlmarchError(f"relative_clamp must be positive or None, got {cfg.relative_clamp}")

    def modules(self, cfg, layer):
        rel = nn.Module()
        for name in ("r_w_bias", "r_r_bias", "r_s_bias"):
            setattr(rel, name, nn.Parameter(torch.zeros(cfg.n_heads, cfg.head_dim)))
        rel.seg_embed = nn.Parameter(torch.zeros(2, cfg.n_heads, cfg.head_dim))
        return {"r_proj": Linear(cfg.d_model, cfg.n_heads * cfg.head_dim, bias=False), "rel": rel}

    def attend(self, attn, x, q, k, v, ctx, dropout_p):
        k, v = cached_kv(attn, k, v, ctx)
        B, H, T, D = q.shape
        S = k.shape[2]
        rel = attn._modules["rel"]
        table, index = ctx.relative  # (R, C), (T, S)
        kr = attn.r_proj(table.to(q.dtype)).view(-1, H, D).transpose(0, 1)  # (H, R, D)
        bias = ((q + rel.r_r_bias[:, None]) @ kr.transpose(-1, -2)).gather(-1, index.expand(B, H, T, S))
        types = ctx.token_type_ids
        if types is not None:
            if S != T:
                raise LlmarchError("segment ids (token_type_ids) are read in a whole forward, not over a decode cache")
            per_segment = (q + rel.r_s_bias[:, None]) @ rel.seg_embed.permute(1, 2, 0)  # (B, H, T, 2)
            apart = (types[:, :, None] != types[:, None, :]).long()[:, None].expand(B, H, T, S)
            bias = bias + per_segment.gather(-1, apart)
        scale = D ** -0.5 if attn.scale is None else attn.scale
        keys = torch.arange(S, device=q.device)
        own = ctx.input_pos[:, None] == keys[None, :]  # (T, S)
        allowed = ctx.mask
        if allowed is None and ctx.causal:
            allowed = ctx.input_pos[:, None] >= keys[None, :]
        if allowed is not None:
            bias = (bias * scale).masked_fill(~(allowed | own), float("-inf"))
        else:
            bias = bias * scale
        return attn.kernel(q + rel.r_w_bias[:, None], k, v, bias, False, dropout_p, attn._modules["hook_pattern"],
                           scale)
