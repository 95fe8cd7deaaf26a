"""Funnel-Transformer's relative attention (Dai et al. 2020, "Funnel-Transformer: Filtering out Sequential Redundancy
for Efficient Language Processing", appendix A.2; Transformer-XL's decomposition, Dai et al. 2019, §3.3): the score
of query i and key j sums a content term, a relative-position term and a segment term,

    s_ij = c (q_i + u) . k_j                                      (content; u: r_w_bias)
         + c ((q_i + v) W_r) . [sin((p_i - p_j) f); cos((p_i - p_j) f)]    (position; v: r_r_bias, W_r: r_kernel)
         + c (q_i + w) . g_{same_ij}                               (segment; w: r_s_bias, g: seg_embed)

with c = 1/sqrt(D), p the tokens' positions in the input (pooled tokens keep their first member's: layers/funnel.py),
f_k = 10000^(-2k/C) over C/2 frequencies, same_ij whether the two tokens share a token type (type 2, <cls>, shares
every one), and, with funnel_separate_cls, the position and segment terms left out of the first query's row and the
first key's column. The position term is computed as A.2.2 factorises it, sin(a - b) = sin a cos b - cos a sin b and
cos(a - b) = cos a cos b + sin a sin b: one (T, C) by (C, S) product per head, never a (T, S, C) table; transformers'
"relative_shift" and "factorized" attention_type are this same sum. Queries may be pooled while keys and values are
not (the first layer after a pooling step reads the unpooled stream, ctx.pooling.kv). q has no bias, k and v have.
Shapes: B batch, T queries, S keys, H heads, D head_dim, C d_model."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import LlmarchError
from .hooks import HookPoint
from .linear import Linear
from .mixer import MIXERS, Mixer

CLS_TYPE = 2  # transformers' cls_token_type_id: a token type every other one counts as its own


@dataclass
class PoolingView:
    """What a Funnel attention layer reads beside x (layers/funnel.py builds it): the queries' and keys' positions
    (T,) and (S,) and token types (B, T) and (B, S), the keys' mask (B, S) bool, the keys' and values' stream (B, S, C)
    where it is not x (a pooled layer's unpooled input), and whether the first token is kept apart (<cls>)."""

    q_pos: torch.Tensor
    k_pos: torch.Tensor
    q_types: torch.Tensor
    k_types: torch.Tensor
    key_mask: torch.Tensor | None
    kv: torch.Tensor | None
    separate_cls: bool


def sinusoids(pos: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """sin(p f) and cos(p f), (N, width / 2) each, f_k = 10000^(-2k / width)."""
    freq = 1 / 10000 ** (torch.arange(width // 2, device=pos.device, dtype=torch.float32) / (width // 2))
    angle = pos.float()[:, None] * freq
    return angle.sin(), angle.cos()


@MIXERS.register("funnel_attention")
class FunnelAttention(Mixer):
    residual_out = ("o_proj.weight",)
    bidirectional_only = True

    @classmethod
    def check(cls, cfg) -> None:
        if cfg.causal or cfg.n_decoder_layers or cfg.recurrence != "funnel" or cfg.d_model % 2:
            raise LlmarchError("mixer 'funnel_attention' needs a bidirectional encoder-only stack run by "
                               "recurrence='funnel' (which gives it positions and token types) and an even d_model")

    @classmethod
    def score_dims(cls, cfg) -> int:
        return cfg.n_heads * (2 * cfg.head_dim + cfg.d_model)

    def __init__(self, cfg, layer: int = 0):
        super().__init__()
        d, H, D = cfg.d_model, cfg.n_heads, cfg.head_dim
        self.n_heads, self.head_dim, self.scale, self.dropout = H, D, D ** -0.5, cfg.dropout
        self.q_proj = Linear(d, H * D, bias=False)
        self.k_proj, self.v_proj = Linear(d, H * D), Linear(d, H * D)
        self.o_proj = Linear(H * D, d)
        self.content_bias, self.position_bias, self.segment_bias = (nn.Parameter(torch.zeros(H, D)) for _ in "uvw")
        self.position_proj = nn.Parameter(torch.zeros(d, H, D))  # W_r
        self.segment_embed = nn.Parameter(torch.zeros(2, H, D))  # g: different, same token type
        self.hook_pattern = HookPoint()

    def new_state(self, batch: int, max_len: int, dtype: torch.dtype, device):
        raise LlmarchError("mixer 'funnel_attention' is bidirectional: an encoder has no decode state")

    def cache_bytes(self, dtype: torch.dtype, max_len: int) -> tuple[int, int]:
        return 0, 0  # no decode state

    def state_note(self, dtype: str) -> str:
        return "none (bidirectional: encoders only)"

    def _positional(self, q: torch.Tensor, view: PoolingView) -> torch.Tensor:
        """c ((q + v) W_r) . [sin(p_i - p_j); cos(p_i - p_j)], (B, H, T, S)."""
        r = torch.einsum("bihd,chd->bhic", q + self.position_bias * self.scale, self.position_proj)  # (B, H, T, C)
        a, b = r.chunk(2, dim=-1)  # the sine's and the cosine's halves
        sq, cq = sinusoids(view.q_pos, r.shape[-1])  # (T, C/2)
        sk, ck = sinusoids(view.k_pos, r.shape[-1])  # (S, C/2)
        left = torch.cat([a * sq + b * cq, b * sq - a * cq], dim=-1)  # (B, H, T, C)
        return left @ torch.cat([ck, sk], dim=-1).t().to(r.dtype)

    def _segment(self, q: torch.Tensor, view: PoolingView) -> torch.Tensor:
        """c (q + w) . g_same, (B, H, T, S)."""
        g = torch.einsum("bihd,shd->bhis", q + self.segment_bias * self.scale, self.segment_embed)  # (B, H, T, 2)
        qt, kt = view.q_types[:, :, None], view.k_types[:, None, :]
        same = ((qt == kt) | (qt == CLS_TYPE) | (kt == CLS_TYPE))[:, None]  # (B, 1, T, S)
        return torch.where(same, g[..., 1:], g[..., :1])

    def forward(self, x: torch.Tensor, ctx) -> torch.Tensor:  # x (B, T, C): the queries' stream
        view = ctx.pooling
        B, T, _ = x.shape
        H, D = self.n_heads, self.head_dim
        kv = x if view.kv is None else view.kv
        q = self.q_proj(x).view(B, T, H, D) * self.scale
        k, v = (p(kv).view(B, kv.shape[1], H, D) for p in (self.k_proj, self.v_proj))
        content = torch.einsum("bihd,bjhd->bhij", q + self.content_bias * self.scale, k)
        rest = self._positional(q, view) + self._segment(q, view)  # c: in q and in each bias
        if view.separate_cls:  # the first query's row and the first key's column: content only
            rest = nn.functional.pad(rest[:, :, 1:, 1:], (1, 0, 1, 0))
        scores = content + rest
        if view.key_mask is not None:
            scores = scores.masked_fill(~view.key_mask[:, None, None, :], float("-inf"))
        probs = self.hook_pattern(scores.float().softmax(dim=-1).to(q.dtype))
        probs = nn.functional.dropout(probs, p=self.dropout, training=self.training)
        return self.o_proj(torch.einsum("bhij,bjhd->bihd", probs, v).reshape(B, T, H * D))
