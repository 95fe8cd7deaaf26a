"""ConvBERT's mixed attention (Jiang et al. 2020, "ConvBERT: Improving BERT with Span-based Dynamic Convolution",
§3.2-3.3): of the n_heads / head_ratio heads' width, half is self-attention and half a span-based dynamic convolution,
concatenated before the output projection. With H = max(n_heads // span_conv_head_ratio, 1) heads of width
D = (d_model // H) // 2, A = H·D, and k = span_conv_kernel:
    attention heads: softmax(q kᵀ / sqrt(D)) v, with q, k, v = x W_q, x W_k, x W_v (each A wide);
    span-aware kernel (eq. 3): K = softmax_k(((SepConv(x) ⊙ q) W_f) per head), one k-tap kernel per token and head,
      SepConv a depthwise (k taps) then pointwise (d -> A) convolution over positions, plus a bias;
    convolution heads (eq. 4): o_{t,h} = Σ_j K_{t,h,j} · (x W_o)_{t + j - (k-1)/2, h}, zero outside the sequence;
    out = [attention heads; convolution heads] W_out (2A -> d).
The convolutions read later positions (and padded ones, as transformers' does: zeros only outside the sequence), so
the mixer is bidirectional only: encoders. Shapes: B batch, T length, C d_model, H heads, D head width, k taps."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import LlmarchError
from .linear import Linear
from .mixer import MIXERS, Mixer


class SeparableConv(nn.Module):
    """A depthwise convolution of k taps over positions, then a pointwise one (C -> A), then a bias; weights in
    nn.Conv1d's shapes: depthwise (C, 1, k), pointwise (A, C, 1), bias (A, 1)."""

    def __init__(self, d: int, out: int, k: int):
        super().__init__()
        self.depthwise = nn.Conv1d(d, d, k, groups=d, padding=k // 2, bias=False)
        self.pointwise = nn.Conv1d(d, out, 1, bias=False)
        self.bias = nn.Parameter(torch.zeros(out, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (B, T, C) -> (B, T, A)
        return (self.pointwise(self.depthwise(x.transpose(1, 2))) + self.bias).transpose(1, 2)


@MIXERS.register("mixed_attention")
class MixedAttention(Mixer):
    residual_out = ("o_proj.weight",)
    bidirectional_only = True

    @classmethod
    def check(cls, cfg) -> None:
        if cfg.causal or cfg.n_decoder_layers:
            raise LlmarchError("mixer 'mixed_attention' convolves over later tokens: it needs a bidirectional "
                               "encoder-only stack (causal=False)")
        if cfg.span_conv_kernel <= 0 or cfg.span_conv_kernel % 2 == 0 or cfg.span_conv_head_ratio <= 0:
            raise LlmarchError(f"mixed_attention needs an odd span_conv_kernel and a positive span_conv_head_ratio, "
                               f"got {cfg.span_conv_kernel} and {cfg.span_conv_head_ratio}")
        if cfg.d_model % max(cfg.n_heads // cfg.span_conv_head_ratio, 1):
            raise LlmarchError("mixed_attention's heads (n_heads // span_conv_head_ratio) must divide d_model")

    @classmethod
    def score_dims(cls, cfg) -> int:
        heads = max(cfg.n_heads // cfg.span_conv_head_ratio, 1)
        return 2 * heads * ((cfg.d_model // heads) // 2)

    def __init__(self, cfg, layer: int = 0):
        super().__init__()
        d, k = cfg.d_model, cfg.span_conv_kernel
        self.heads = max(cfg.n_heads // cfg.span_conv_head_ratio, 1)
        self.head_dim = (d // self.heads) // 2
        a = self.heads * self.head_dim
        self.k, self.dropout = k, cfg.dropout
        self.q_proj, self.k_proj, self.v_proj = Linear(d, a), Linear(d, a), Linear(d, a)
        self.key_conv = SeparableConv(d, a, k)
        self.kernel_proj = Linear(a, self.heads * k)  # W_f: a k-tap kernel per head
        self.conv_proj = Linear(d, a)  # W_o: what the dynamic kernels convolve
        self.o_proj = Linear(2 * a, d)

    def new_state(self, batch: int, max_len: int, dtype: torch.dtype, device):
        raise LlmarchError("mixer 'mixed_attention' is bidirectional: an encoder has no decode state")

    def cache_bytes(self, dtype: torch.dtype, max_len: int) -> tuple[int, int]:
        return 0, 0  # no decode state

    def state_note(self, dtype: str) -> str:
        return "none (bidirectional: encoders only)"

    def forward(self, x: torch.Tensor, ctx) -> torch.Tensor:
        B, T, _ = x.shape
        H, D, k = self.heads, self.head_dim, self.k
        q = self.q_proj(x)  # (B, T, A)
        kernels = self.kernel_proj(self.key_conv(x) * q).view(B, T, H, k).softmax(-1)  # (B, T, H, k)
        pad = (k - 1) // 2
        spans = F.pad(self.conv_proj(x), (0, 0, pad, pad)).unfold(1, k, 1)  # (B, T, A, k): each token's window
        conv = torch.einsum("bthdk,bthk->bthd", spans.reshape(B, T, H, D, k), kernels)  # (B, T, H, D)
        heads = [t.view(B, T, H, D).transpose(1, 2) for t in (q, self.k_proj(x), self.v_proj(x))]  # (B, H, T, D)
        attn = F.scaled_dot_product_attention(*heads, attn_mask=ctx.mask,
                                              dropout_p=self.dropout if self.training else 0.0)
        return self.o_proj(torch.cat([attn.transpose(1, 2), conv], dim=2).reshape(B, T, 2 * H * D))
