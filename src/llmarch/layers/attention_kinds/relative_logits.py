"""Softmax attention with a content-conditioned relative position bias (Inkling's RelLogitsProj, its only
positions; RoPE may turn q and k besides, a position bias may not join it): each query token mixes a learned bank of
bias-versus-distance profiles by its own relative state, r_t = x_t W_r per head (rel_logits_dim wide), so the bias
of key j for query t is (r_t P)[t - j] for 0 <= t - j < E (rel_logits_extent), 0 beyond, P (rel_logits_dim, E)
learned per layer:

    s_tj = q_t . k_j * scale + b_tj,   b_tj = sum_d r_td P[d, t - j].

With a window (sliding_window: optional for this kind) a query sees its last w keys. With a query temperature
(attn_temp_scale) the bias is scaled with the query, so the whole score is. Distances count cache slots, which
within a left-padded row equal distances in positions. Inkling 2 passes each relative state through a learned gain
per head and channel and an L2 clip (rel_logits_clip), and its sink logits may be per token (attn_sink_proj)."""
from __future__ import annotations

import torch

from ...errors import LlmarchError
from ..linear import Linear
from ..norms import L2Clip
from ..positions import BIAS_POSITIONS
from .kind import ATTENTION_KINDS, AttentionKind, cached_kv


@ATTENTION_KINDS.register("relative_logits")
class RelativeLogits(AttentionKind):
    uses_mask = True
    windowed = None  # a window is optional (Inkling's sliding layers have one, its full layers none)

    def __init__(self, cfg, layer: int):
        super().__init__(cfg, layer)
        self.extent, self.window = cfg.rel_logits_extent, cfg.sliding_window

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        if cfg.rel_logits_dim <= 0 or cfg.rel_logits_extent <= 0:
            raise LlmarchError(f"attention='relative_logits' needs positive rel_logits_dim and rel_logits_extent, "
                               f"got {cfg.rel_logits_dim} and {cfg.rel_logits_extent}")
        if cfg.rel_logits_clip is not None and cfg.rel_logits_clip <= 0:
            raise LlmarchError(f"rel_logits_clip bounds the relative states' norm: positive, got {cfg.rel_logits_clip}")
        if cfg.positions in BIAS_POSITIONS or not cfg.causal:
            raise LlmarchError(f"attention='relative_logits' is causal and adds its own bias, not another "
                               f"(positions={cfg.positions!r}, causal={cfg.causal})")

    def modules(self, cfg, layer: int):
        table = torch.nn.Module()  # rel.weight (rel_logits_dim, E): the bank of bias profiles
        table.weight = torch.nn.Parameter(torch.empty(cfg.rel_logits_dim, cfg.rel_logits_extent))
        parts = {"r_proj": Linear(cfg.d_model, cfg.n_heads * cfg.rel_logits_dim, bias=False), "rel": table}
        if cfg.rel_logits_clip is not None:
            parts["r_norm"] = L2Clip(cfg.rel_logits_clip, cfg.n_heads, cfg.rel_logits_dim)
        return parts

    def attend(self, attn, x, q, k, v, ctx, dropout_p):
        k, v = cached_kv(attn, k, v, ctx)
        B, H, T, _ = q.shape
        S = k.shape[2]
        r = attn.r_proj(x).view(B, T, H, -1)  # (B, T, H, d_rel)
        if "r_norm" in attn._modules:
            r = attn.r_norm(r)
        profiles = (r.float() @ attn.rel.weight.float()).transpose(1, 2)  # (B, H, T, E)
        keys = torch.arange(S, device=q.device)
        dist = ctx.input_pos[:, None] - keys[None, :]  # (T, S)
        bias = profiles.gather(-1, dist.clamp(0, self.extent - 1).expand(B, H, T, S))
        bias = bias.masked_fill((dist < 0) | (dist >= self.extent), 0.0)
        if attn.temperature is not None:  # the temperature scales the whole score: the query's and the bias
            bias = bias * attn.temperature_at(ctx)
        allowed = ctx.mask if ctx.mask is not None else (dist >= 0)[None, None]
        if self.window is not None:
            allowed = allowed & (dist < self.window)
        mask = bias.masked_fill(~allowed, float("-inf")).to(q.dtype)
        sinks = attn.sink_logits(x)
        return attn.kernel(q, k, v, mask, False, dropout_p, attn._modules["hook_pattern"], attn.scale, sinks)
