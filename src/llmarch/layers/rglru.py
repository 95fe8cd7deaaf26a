"""Griffin's recurrent block (De et al. 2024, "Griffin: Mixing Gated Linear Recurrences with Local Attention for
Efficient Language Models", §2.4 and Figure 2; RecurrentGemma 2B/9B). Two branches from the block's input x:

    gate = GeLU(x W_y + b_y)                                   (tanh-approximate GeLU, as RecurrentGemma's)
    u    = conv(x W_x + b_x)                                   (depthwise temporal Conv1D, ssm_conv = 4 taps)
    out  = (RG-LRU(u) * gate) W_out + b_out

The RG-LRU (Real-Gated Linear Recurrent Unit, §2.4, eqs. 1-4), per channel of its lru_width:

    r_t = sigmoid(u_t W_a + b_a)              recurrence gate       (eq. 1)
    i_t = sigmoid(u_t W_x + b_x)              input gate            (eq. 2)
    a_t = a^(c r_t),  a = sigmoid(Lambda)     c = 8                 (eq. 3)
    h_t = a_t h_{t-1} + sqrt(1 - a_t^2) (i_t * u_t)                 (eq. 4)

computed in log space, log a_t = -c r_t softplus(-Lambda): the parameter stored (`recurrent_param`, as Google's
and transformers' code store it) is -Lambda. The gates' W are block-diagonal, n_heads blocks of lru_width / n_heads.
At a sequence's first token (position 0, the first real one of a left-padded row) the state resets: a_t = 0 and
the input is not scaled, h_0 = i_0 * u_0, as RecurrentGemma does (its `reset`). Padding enters neither the
convolution nor the recurrence (its inputs are zeroed), so a left-padded row computes what it would alone.

The recurrence runs as a parallel scan (mamba.py's Blelloch scan; its gradient the same scan reversed) in fp32;
one decoded token is one step. Decode state: the convolution's last ssm_conv - 1 inputs and h (fp32), constant in
the context: no per-token cache."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LlmarchError
from .linear import Linear
from .mamba import _scan_
from .mixer import MIXERS, Mixer
from .ssm import MixerState, causal_conv, check_recurrent, conv_state, depthwise_conv, masked, token_mask

C = 8.0  # the constant c of a_t = a^(c r_t) (§2.4)
MAX_SQRT_GRADIENT = 1000.0  # sqrt(1 - a^2)'s gradient clipped here (RecurrentGemma: no NaNs training in bf16)


class _BoundedSqrt(torch.autograd.Function):
    """sqrt(x), whose gradient 1 / (2 sqrt(x)) is clipped at MAX_SQRT_GRADIENT (RecurrentGemma's
    SqrtBoundDerivative): near a = 1 the exact one blows up."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.sqrt(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g / torch.sqrt(torch.clip(4.0 * x, min=1 / MAX_SQRT_GRADIENT ** 2))


class _LinearScan(torch.autograd.Function):
    """h_t = a_t h_{t-1} + x_t along dim 1 from h_{-1} = h0, all (B, T, W) fp32 (h0 (B, W)). Backward: with
    g_t = dL/dh_t in full, g_t = dL/dy_t + a_{t+1} g_{t+1} (the same scan over reversed time); then
    dL/dx_t = g_t, dL/da_t = g_t h_{t-1}, dL/dh0 = a_0 g_0."""

    @staticmethod
    def forward(ctx, a, x, h0):
        h = x.clone()
        h[:, 0].addcmul_(a[:, 0], h0)
        _scan_(a.clone(), h)
        ctx.save_for_backward(a, h0, h)
        return h

    @staticmethod
    def backward(ctx, gy):
        a, h0, h = ctx.saved_tensors
        a_next = torch.cat([a[:, :1], a.flip(1)[:, :-1]], dim=1)  # reversed: step s takes a_{T-s}; a'_0 unread
        g = gy.flip(1).contiguous()
        _scan_(a_next, g)
        g = g.flip(1)
        h_prev = torch.cat([h0[:, None], h[:, :-1]], dim=1)
        return g * h_prev, g, g[:, 0] * a[:, 0]


def linear_scan(a: torch.Tensor, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """Every h_t of h_t = a_t h_{t-1} + x_t, (B, T, W) in fp32, from h0 (B, W) or zeros."""
    a, x = a.float(), x.float()
    return _LinearScan.apply(a, x, x.new_zeros(x.shape[0], x.shape[2]) if h0 is None else h0.float())


@MIXERS.register("rglru")
class RecurrentBlock(Mixer):
    residual_out = ("linear_out.weight",)

    @classmethod
    def check(cls, cfg) -> None:
        check_recurrent(cfg, "rglru", ("ssm_conv",))
        width = cfg.lru_width or cfg.d_model
        if width <= 0 or width % cfg.n_heads:
            raise LlmarchError(f"lru_width={width} must be a positive multiple of n_heads={cfg.n_heads} (the RG-LRU "
                               "gates' blocks)")

    def __init__(self, cfg, layer: int = 0):
        super().__init__()
        d, w, H = cfg.d_model, cfg.lru_width or cfg.d_model, cfg.n_heads
        self.width, self.heads = w, H
        self.linear_y = Linear(d, w, bias=cfg.ssm_bias)  # the GeLU gate branch
        self.linear_x = Linear(d, w, bias=cfg.ssm_bias)  # the recurrent branch
        self.conv_1d = depthwise_conv(w, cfg.ssm_conv, cfg.ssm_conv_bias)
        self.recurrent_param = nn.Parameter(torch.zeros(w))  # -Lambda: a = sigmoid(Lambda) = exp(-softplus(this))
        self.input_gate_weight = nn.Parameter(torch.zeros(H, w // H, w // H))  # per block (in, out)
        self.input_gate_bias = nn.Parameter(torch.zeros(H, w // H))
        self.recurrent_gate_weight = nn.Parameter(torch.zeros(H, w // H, w // H))
        self.recurrent_gate_bias = nn.Parameter(torch.zeros(H, w // H))
        self.linear_out = Linear(w, d, bias=cfg.ssm_bias)

    @torch.no_grad()
    def init_ssm(self) -> None:
        """a = sigmoid(Lambda) uniform-ish in [0.9, 0.999] (a^2 uniform in [0.81, 0.998], Griffin §2.4 and
        RecurrentGemma), gate blocks N(0, 0.01 / block width), zero gate biases, the convolution N(0, 0.01 / taps)."""
        a2 = torch.empty_like(self.recurrent_param).uniform_(0.9 ** 2 + 1e-8, 0.999 ** 2 + 1e-8)
        self.recurrent_param.copy_(torch.log(a2.rsqrt() - 1.0))  # softplus(p) = -log(a)
        for w in (self.input_gate_weight, self.recurrent_gate_weight):
            nn.init.normal_(w, std=(0.01 / w.shape[-1]) ** 0.5)
        nn.init.normal_(self.conv_1d.weight, std=(0.01 / self.conv_1d.kernel_size[0]) ** 0.5)

    def state_note(self, dtype: str) -> str:
        return "constant in the context; RG-LRU states in fp32"

    def cache_note(self) -> str:
        return "recurrent layers keep no per-token cache"

    def new_state(self, batch: int, max_len: int, dtype: torch.dtype, device) -> MixerState:
        return MixerState(conv=conv_state(batch, self.width, self.conv_1d.kernel_size[0], dtype, device),
                          h=torch.zeros(batch, self.width, device=device))

    def _gate(self, u: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """sigmoid(u W + b) with W block-diagonal: (B, T, W) -> (B, T, W)."""
        blocks = torch.einsum("bthi,hij->bthj", u.unflatten(-1, (self.heads, -1)), weight) + bias
        return torch.sigmoid(blocks.flatten(-2))

    def rg_lru(self, u: torch.Tensor, reset: torch.Tensor, h: torch.Tensor | None) -> torch.Tensor:
        """Eqs. 1-4 over u (B, T, W); reset (B, T, 1) bool: the sequence starts there; h (B, W) fp32 the state
        before u, updated in place, or None (zeros). Returns every h_t in u's dtype."""
        r = self._gate(u, self.recurrent_gate_weight, self.recurrent_gate_bias)
        i = self._gate(u, self.input_gate_weight, self.input_gate_bias)
        log_a = -C * r * F.softplus(self.recurrent_param)  # (B, T, W)
        scale = torch.where(reset, 1.0, _BoundedSqrt.apply(1 - torch.exp(2 * log_a)))
        x = (u * i * scale.to(u.dtype)).float()
        a = torch.exp(log_a).float().masked_fill(reset, 0.0)
        if h is not None and u.shape[1] == 1:  # one decoded token: one step
            h.copy_(a[:, 0] * h + x[:, 0])
            return h[:, None].to(u.dtype)
        out = linear_scan(a, x, h)
        if h is not None:
            h.copy_(out[:, -1])
        return out.to(u.dtype)

    def forward(self, x: torch.Tensor, ctx=None) -> torch.Tensor:
        mask = token_mask(ctx, x)
        gate = F.gelu(self.linear_y(x), approximate="tanh")
        state = self.cache
        u = masked(self.linear_x(x), mask)  # padding enters neither the convolution nor its state
        u = masked(causal_conv(u, self.conv_1d.weight, self.conv_1d.bias, None if state is None else state["conv"]),
                   mask)
        B, T = x.shape[:2]
        pos = torch.arange(T, device=x.device).expand(B, T) if ctx is None or ctx.positions is None else ctx.positions
        y = self.rg_lru(u, (pos == 0)[..., None], None if state is None else state["h"])
        return self.linear_out(y * gate)
