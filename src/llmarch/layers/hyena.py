"""The Hyena operator (Poli et al. 2023, "Hyena Hierarchy: Towards Larger Convolutional Language Models",
Definition 3.1 and Algorithms 1-3): gates and long convolutions interleaved, attention-free. Of order N, width d:

    (v, x^1, ..., x^N) = ShortConv(in_proj(u))          one projection to (N + 1) d channels, then a depthwise
                                                          causal convolution of kernel K over all of them
    z^1 = v;   z^{n+1}_t = x^n_t ⊙ ((h^n * z^n)_t + b^n ⊙ z^n_t)   for n = 1..N,   y = out_proj(z^{N+1})

where * is a causal convolution as long as the sequence, (h * z)_t = sum_{s<=t} h_{t-s} z_s per channel, and b^n
a per-channel skip term (the reference code's filter bias). The filters are implicit (§3.3, eq. 7): one small
FFN of the position, h_t = window(t) ⊙ FFN(PE(t)), PE(t) = [t/L, cos(2πkt/L), sin(2πkt/L) for k = 1..K], FFN =
Linear, Sin, Linear, Sin, Linear to the N d channels, window(t) = exp(-α_c t/L) with decay rates α_c spread over
the channels (the reference's ExponentialModulation). L is context_length: a forward of T tokens uses the first T
taps of the same filters, so they do not depend on T.

Training: each long convolution by FFT, O(N d T log T), plus the projections; no attention matrix.
Generation keeps every z^n seen so far (MixerState "z", (B, N, d, max_len), max_len <= context_length, written at
input_pos) and the short convolution's last K-1 inputs ("conv"), and computes the new token's long convolutions directly:
O(t N d) per token at position t (over the whole buffer, O(L N d), in a fixed-shape compiled step). Unlike Mamba's
recurrence, whose step costs the same at any position, this cost and the state (N d L per sequence) grow with
the context, as an attention KV cache does."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import LlmarchError
from .linear import Linear
from .mixer import MIXERS, Mixer
from .ssm import MixerState, causal_conv, check_recurrent, conv_state, depthwise_conv, masked, token_mask

# The window falls to TARGET at these fractions of the context: fastest and slowest channel (the reference's
# ExponentialModulation defaults fast_decay_pct, slow_decay_pct, target).
FAST_DECAY, SLOW_DECAY, TARGET = 0.3, 1.5, 1e-2


def fft_causal_conv(z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """y_t = sum_{s<=t} h_{t-s} z_s along the last dim in O(T log T), fp32. z (..., C, T), h (C, T). Padding both
    to 2T makes the FFT's circular convolution a linear one: no output wraps around onto an earlier t."""
    T = z.shape[-1]
    n = 2 * T
    y = torch.fft.irfft(torch.fft.rfft(z.float(), n=n) * torch.fft.rfft(h.float(), n=n), n=n)
    return y[..., :T]


def direct_causal_conv(z: torch.Tensor, h: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
    """The definition, fp32: y_t = sum_{s<=t} h_{t-s} z_s for each t in positions (default all), z (..., C, S), h
    (C, >= S). Returns (..., C, len(positions)). O(len(positions) S C): the fixed-shape decode step, and the
    tests' reference."""
    S = z.shape[-1]
    if positions is None:
        positions = torch.arange(S, device=z.device)
    lag = positions[:, None] - torch.arange(S, device=z.device)  # (T, S): t - s
    taps = h.float()[:, lag.clamp(min=0)] * (lag >= 0)  # (C, T, S): h_{t-s}, zero for s > t
    return torch.einsum("...cs,cts->...ct", z.float(), taps)


def positional_features(n: int, length: int, features: int, device) -> torch.Tensor:
    """PE(t) for t < n (eq. 7): t/L, then cos and sin of 2πkt/L for k = 1..(features-1)/2. (n, features)."""
    t = torch.arange(n, device=device, dtype=torch.float32)[:, None] / length
    k = torch.arange(1, (features - 1) // 2 + 1, device=device, dtype=torch.float32)
    angle = 2 * math.pi * k * t
    return torch.cat([t, angle.cos(), angle.sin()], dim=-1)


def per_order(x: torch.Tensor, order: int) -> torch.Tensor:
    """(N d, ...) -> (N, d, ...): channel c·N + n is filter n's channel c (the reference's '(v o)' layout, so each
    order's channels span the whole range of decay rates)."""
    return x.unflatten(0, (-1, order)).transpose(0, 1)


class Sin(nn.Module):
    """sin(w ⊙ x) with a learned frequency per unit (the reference's filter activation)."""

    def __init__(self, dim: int):
        super().__init__()
        self.freq = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.freq * x)


class ImplicitFilter(nn.Module):
    """The N long filters, d channels each, from one FFN of the position (§3.3), and their skip terms b^n."""

    quantize = False  # its weights generate the long filters, read whole (quant/apply.py leaves them)

    def __init__(self, cfg):
        super().__init__()
        d, N, H = cfg.d_model, cfg.hyena_order, cfg.hyena_filter_hidden
        self.order, self.length, self.features = N, cfg.context_length, cfg.hyena_filter_features
        self.ffn = nn.Sequential(Linear(self.features, H), Sin(H), Linear(H, H), Sin(H),
                                 Linear(H, N * d, bias=False))
        self.bias = nn.Parameter(torch.zeros(N * d))

    def forward(self, n: int) -> torch.Tensor:
        """h^1..h^N at t = 0..n-1: (N, d, n), fp32."""
        w = self.ffn[0].weight
        pe = positional_features(n, self.length, self.features, w.device)
        alpha = torch.linspace(-math.log(TARGET) / SLOW_DECAY, -math.log(TARGET) / FAST_DECAY,
                               self.ffn[-1].out_features, device=w.device)
        h = self.ffn(pe.to(w.dtype)).float() * torch.exp(-pe[:, :1] * alpha)  # (n, N d): FFN(PE(t)) ⊙ window(t)
        return per_order(h.t(), self.order).contiguous()  # (N, d, n), each channel's taps contiguous

    def skip(self) -> torch.Tensor:
        return per_order(self.bias, self.order).float()  # (N, d)


class HyenaState(MixerState):
    """MixerState plus the N filters over the whole context, time-reversed (taps[..., L-1-j] = h_j, so one
    token's taps h_{t-1}..h_0 are the view taps[..., L-t:]), computed once when generation starts (the parameters
    do not change while it runs) and shared by every row, so beam reordering leaves them be. z (B, N, d, L):
    the history, by slot."""

    slot_axes = {"z": 3}

    def __init__(self, taps: torch.Tensor, **tensors: torch.Tensor):
        super().__init__(**tensors)
        self.taps = taps

    @property
    def nbytes(self) -> int:
        return super().nbytes + self.taps.numel() * self.taps.element_size()


@MIXERS.register("hyena")
class Hyena(Mixer):
    @classmethod
    def check(cls, cfg) -> None:
        check_recurrent(cfg, "hyena", ("hyena_order", "hyena_filter_hidden", "hyena_filter_features",
                                       "hyena_short_conv"))
        if cfg.hyena_filter_features % 2 == 0:
            raise LlmarchError("hyena_filter_features must be odd: t, then cos/sin pairs")

    def __init__(self, cfg, layer: int = 0):
        super().__init__()
        d, N = cfg.d_model, cfg.hyena_order
        self.d, self.order, self.length = d, N, cfg.context_length
        self.in_proj = Linear(d, (N + 1) * d, bias=cfg.bias)  # rows: v, x^1, ..., x^N
        self.short_conv = depthwise_conv((N + 1) * d, cfg.hyena_short_conv, cfg.bias)
        self.filter = ImplicitFilter(cfg)
        self.drop = nn.Dropout(cfg.dropout)
        self.out_proj = Linear(d, d, bias=cfg.bias)

    @torch.no_grad()
    def init_ssm(self) -> None:
        """As the reference LM leaves them after its GPT-2 init: the filter FFN's Linear layers N(0, 0.02) with
        zero biases (the generic init already), Sin frequencies 1, skip terms N(0, 1), and the short convolution
        with PyTorch's default (kaiming-uniform) init, which that init does not touch."""
        for m in self.filter.ffn:
            if isinstance(m, Sin):
                m.freq.fill_(1.0)
        self.filter.bias.normal_()
        self.short_conv.reset_parameters()

    def state_note(self, dtype: str) -> str:
        return f"{dtype}, a history of up to context_length {self.length} tokens"

    def new_state(self, batch: int, max_len: int, dtype: torch.dtype, device) -> HyenaState:
        """The history holds as many tokens as the generation may reach (max_len, at most context_length), so its
        memory grows with the sequences generated, not with the longest the model could take; the taps are the
        filters' first max_len values, time-reversed (what that history is ever multiplied by)."""
        M = min(max_len, self.length)
        with torch.no_grad():
            taps = self.filter(self.length).flip(-1)[..., self.length - M:]
        return HyenaState(taps,
                          conv=conv_state(batch, (self.order + 1) * self.d, self.short_conv.kernel_size[0], dtype,
                                          device),
                          z=torch.zeros(batch, self.order, self.d, M, dtype=dtype, device=device))

    def forward(self, x: torch.Tensor, ctx=None) -> torch.Tensor:  # x: (B, T, C)
        state = self.cache
        if state is not None and ctx is None:
            raise LlmarchError("hyena: a call with a state needs ctx.input_pos, the slots of its tokens")
        mask = token_mask(ctx, x)
        # padding zeroed after the projection (its bias too) and after the short convolution, so it adds
        # nothing to any long convolution and a padded row's real tokens see what an unpadded row's do
        u = masked(self.in_proj(x), mask)
        u = masked(causal_conv(u, self.short_conv.weight, self.short_conv.bias,
                               None if state is None else state["conv"]), mask)
        v, *gates = u.transpose(1, 2).split(self.d, dim=1)  # (B, d, T) each
        filters = self.filter(x.shape[1]) if state is None else None
        skip = self.filter.skip()
        z = v
        for n, gate in enumerate(gates):  # Definition 3.1: z^{n+1} = x^n ⊙ (h^n * z^n)
            y = fft_causal_conv(z, filters[n]) if state is None else self._cached_conv(z, n, ctx, state)
            z = self.drop(gate * (y + skip[n, :, None] * z.float()).to(z.dtype))
        return self.out_proj(z.transpose(1, 2))

    def _cached_conv(self, z: torch.Tensor, n: int, ctx, state: HyenaState) -> torch.Tensor:
        """(h^n * z)_t at this call's positions over every position so far, z (B, d, T) written into the state
        at input_pos first. Returns (B, d, T), fp32."""
        past = state["z"][:, n]  # (B, d, L), a view: written in place
        past.index_copy_(-1, ctx.input_pos, z.to(past.dtype))
        taps, L = state.taps[n], past.shape[-1]
        if z.shape[-1] > 1:  # a prompt or a chunk: by FFT over the filled slots, read at this call's
            S = ctx.kv_len or L
            return fft_causal_conv(past[..., :S], taps[:, L - S:].flip(-1)).index_select(-1, ctx.input_pos)
        if ctx.kv_len:  # one token at slot t-1, t = kv_len a Python int: sum_s z_s h_{t-1-s} over views, O(t d)
            t = ctx.kv_len
            return (past[..., :t].float() * taps[:, L - t:]).sum(-1, keepdim=True)
        return direct_causal_conv(past, taps.flip(-1), ctx.input_pos)  # fixed shapes (compiled): O(L d)
