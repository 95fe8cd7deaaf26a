"""Mamba's selective state-space mixer (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective
State Spaces", Algorithm 2 and §3.4's block). Per channel d of the inner width and state dimension n:

    h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t          (zero-order-hold discretisation of h' = A h + B x,
    y_t = C_t . h_t + D x_t                             with the simplified dt B for B's, eq. 4 and §3.5)

A = -exp(A_log) (D_inner x N, diagonal, negative, so exp(dt A) < 1) is fixed; dt (softplus of a low-rank
projection), B and C (N each) depend on the input: the "selection" that lets the model keep or forget
per token. The block: in_proj to x and a gate z; x through a depthwise causal convolution (kernel 4) and
SiLU; the SSM; y * SiLU(z); out_proj. Jamba adds RMSNorms over dt, B and C (ssm_inner_norm); Falcon Mamba
(TII 2024, "Falcon Mamba: The First Competitive Attention-free 7B Language Model") the same norms without gains
(ssm_inner_norm_gain=False), of their own epsilon (ssm_inner_norm_eps). Zamba (Glorioso et al. 2024) splits the
inner width into ssm_heads slices, each its own Mamba with its own x_proj (H, R + 2N, P) and dt_proj (H, P, R), so
B, C and dt's low-rank input differ per slice; A_log (H, P, N) and D (H, P) held per slice as Zamba stores them.

The scan over the sequence has no Python loop over time steps: a work-efficient parallel scan (Blelloch)
in 2 log2(T) vectorised steps over blocks that double in length (chunks of 2, 4, 8, ... steps whose totals
combine), O(T D N) work; its gradient is the same scan run backwards. Memory O(T D N) per layer: every
position's state exists once, as in transformers' PyTorch path. Generation runs the recurrence one token at a time (`step`): O(D N) per token, whatever the
context, with the convolution's last K-1 inputs and h as the state."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LlmarchError
from .linear import Linear
from .norms import PlainRMSNorm, RMSNorm
from .hooks import HookPoint
from .mixer import MIXERS, Mixer
from .ssm import (MixerState, causal_conv, check_recurrent, conv_state, depthwise_conv, init_dt_bias, masked,
                  token_mask)


def _scan_(a: torch.Tensor, x: torch.Tensor) -> None:
    """In place along dim 1: x_t <- a_t x_{t-1} + x_t (an inclusive linear recurrence from x_{-1} = 0), by
    Blelloch's work-efficient parallel scan (Blelloch 1990): an up-sweep where level k combines neighbouring
    blocks of 2^k steps into blocks of 2^(k+1) (block totals at positions 2^(k+1) m - 1), then a down-sweep
    that completes every other position from the full prefix just before its block. 2 log2(T) vectorised
    steps, O(T) work in all (a Hillis-Steele scan costs O(T log T)); any T. `a` is overwritten."""
    T, s = x.shape[1], 1
    while 2 * s <= T:  # up-sweep: x[i] = total of (i-2s+1 .. i) for i = 2s-1, 4s-1, ...
        _combine_(a, x, 2 * s - 1, s)
        s *= 2
    while s >= 1:  # down-sweep: i = 3s-1, 5s-1, ... take the full prefix at i - s (a multiple of 2s, minus 1)
        if 3 * s <= T:
            _combine_(a, x, 3 * s - 1, s)
        s //= 2


def _combine_(a: torch.Tensor, x: torch.Tensor, first: int, s: int) -> None:
    """For i = first, first + 2s, ...: x_i += a_i x_{i-s}; a_i *= a_{i-s} (block i-s precedes block i)."""
    dst_x, dst_a = x[:, first::2 * s], a[:, first::2 * s]
    n = dst_x.shape[1]
    dst_x.addcmul_(dst_a, x[:, first - s::2 * s][:, :n])
    dst_a.mul_(a[:, first - s::2 * s][:, :n])


class _SelectiveScan(torch.autograd.Function):
    """y_t = C_t . h_t with h_t = exp(dt_t A) h_{t-1} + (dt_t x_t) B_t from h_{-1} = h0, fused, so that
    autograd keeps only the states h: the (b, T, D, N) decays are recomputed in the backward, which is the
    same scan run in reverse (g = dL/dh: g_t = C_t dL/dy_t + exp(dt_{t+1} A) g_{t+1}), and every reduction
    over D or N is an einsum that never materialises a product of two (b, T, D, N) tensors it can avoid."""

    @staticmethod
    def forward(ctx, dt, A, dtx, B, C, h0):
        a = torch.exp(dt[..., None] * A)  # (b, T, D, N)
        h = dtx[..., None] * B[:, :, None, :]
        h[:, 0].addcmul_(a[:, 0], h0)
        _scan_(a, h)
        ctx.save_for_backward(dt, A, dtx, B, C, h0, h)
        return torch.einsum("btdn,btn->btd", h, C), h[:, -1].clone()

    @staticmethod
    def backward(ctx, gy, g_last):
        dt, A, dtx, B, C, h0, h = ctx.saved_tensors
        # the reverse scan runs forwards over flipped time: g'_s = a'_s g'_{s-1} + c'_s with a'_s = a_{T-s},
        # the decay of the step after (a'_0 is never read: nothing precedes s = 0)
        dt_next = torch.cat([dt[:, :1], dt.flip(1)[:, :-1]], dim=1)
        g = gy.flip(1)[..., None] * C.flip(1)[:, :, None, :]  # dL/dh_t through y_t alone
        g[:, 0] += g_last
        _scan_(torch.exp(dt_next[..., None] * A), g)
        g = g.flip(1)  # dL/dh_t in full: also dL/d(dt_t x_t B_t) and, times h_{t-1} a_t, dL/d(dt_t A)
        g_dtx, g_B = torch.einsum("btdn,btn->btd", g, B), torch.einsum("btdn,btd->btn", g, dtx)
        g_C = torch.einsum("btdn,btd->btn", h, gy)
        a = torch.exp(dt[..., None] * A)
        g_h0 = g[:, 0] * a[:, 0]
        g[:, 1:].mul_(h[:, :-1])
        g[:, 0].mul_(h0)
        g.mul_(a)
        g_dt, g_A = torch.einsum("btdn,dn->btd", g, A), torch.einsum("btdn,btd->dn", g, dt)
        return g_dt, g_A, g_dtx, g_B, g_C, g_h0


def selective_scan(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The parallel scan. x, dt (b, T, D); A (D, N); B, C (b, T, N); h0 (b, D, N) or None (zeros).
    Returns y_t = C_t . h_t (b, T, D) (without the D skip) and the last state h_T (b, D, N), in fp32."""
    x, dt, A, B, C = x.float(), dt.float(), A.float(), B.float(), C.float()
    if h0 is None:
        h0 = x.new_zeros(x.shape[0], *A.shape)
    return _SelectiveScan.apply(dt, A, dt * x, B, C, h0.float())


def selective_scan_reference(x, dt, A, B, C, h0=None):
    """The recurrence one step at a time (the definition the chunked scan must equal)."""
    h = torch.zeros(x.shape[0], *A.shape) if h0 is None else h0.float()
    ys = []
    for t in range(x.shape[1]):
        h = torch.exp(dt[:, t, :, None] * A) * h + (dt[:, t] * x[:, t])[..., None] * B[:, t, None, :]
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, t]))
    return torch.stack(ys, 1), h


def selective_step(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   h: torch.Tensor) -> torch.Tensor:
    """One token: x, dt (b, D); B, C (b, N); h (b, D, N) fp32, updated in place. Returns C . h (b, D)."""
    h.copy_(torch.exp(dt.float()[..., None] * A) * h + (dt * x).float()[..., None] * B.float()[:, None])
    return torch.einsum("bdn,bn->bd", h, C.float())


@MIXERS.register("mamba")
class Mamba(Mixer):
    no_decay = ("A_log", "D")
    @classmethod
    def check(cls, cfg) -> None:
        check_recurrent(cfg, "mamba", ("ssm_state", "ssm_expand", "ssm_conv", "ssm_dt_rank"))
        if cfg.ssm_inner is not None:
            raise LlmarchError("ssm_inner is Mamba-2's; mixer 'mamba' is ssm_expand * d_model wide")
        if cfg.ssm_inner_norm_eps is not None and cfg.ssm_inner_norm_eps <= 0:
            raise LlmarchError(f"ssm_inner_norm_eps must be positive, got {cfg.ssm_inner_norm_eps}")
        inner = cfg.ssm_expand * cfg.d_model
        if cfg.ssm_heads < 1 or inner % cfg.ssm_heads or (cfg.ssm_heads > 1 and cfg.ssm_inner_norm):
            raise LlmarchError(f"ssm_heads={cfg.ssm_heads} must divide the inner width {inner} (and, above 1, goes "
                               "without ssm_inner_norm)")

    def __init__(self, cfg, layer: int = 0):
        super().__init__()
        d, inner, N, R = cfg.d_model, cfg.ssm_expand * cfg.d_model, cfg.ssm_state, cfg.ssm_dt_rank
        self.inner, self.state_size, self.dt_rank = inner, N, R
        self.in_proj = Linear(d, 2 * inner, bias=cfg.ssm_bias)  # rows: x, then the gate z
        self.conv1d = depthwise_conv(inner, cfg.ssm_conv, cfg.ssm_conv_bias)
        self.heads = H = cfg.ssm_heads
        if H == 1:
            self.x_proj = Linear(inner, R + 2 * N, bias=False)  # dt (low rank), B, C
            self.dt_proj = Linear(R, inner, bias=True)
        else:  # Zamba: one x_proj and dt_proj per slice of P = inner / H channels
            P = inner // H
            self.x_proj_weight = nn.Parameter(torch.zeros(H, R + 2 * N, P))
            self.dt_proj_weight = nn.Parameter(torch.zeros(H, P, R))
            self.dt_proj_bias = nn.Parameter(torch.zeros(H, P))
        shape = (inner,) if H == 1 else (H, inner // H)
        self.A_log = nn.Parameter(torch.zeros(*shape, N))
        self.D = nn.Parameter(torch.ones(shape))
        self.out_proj = Linear(inner, d, bias=cfg.ssm_bias)
        if cfg.ssm_inner_norm:  # Jamba's, with gains; Falcon Mamba's without (ssm_inner_norm_gain), so no weights
            norm = RMSNorm if cfg.ssm_inner_norm_gain else PlainRMSNorm
            eps = cfg.norm_eps if cfg.ssm_inner_norm_eps is None else cfg.ssm_inner_norm_eps
            self.dt_norm, self.b_norm, self.c_norm = norm(R, eps), norm(N, eps), norm(N, eps)
        self.hook_ssm_state = HookPoint()  # analysis: the SSM state (B, D, N) after the call's last token

    @torch.no_grad()
    def init_ssm(self) -> None:
        """S4D-real A_n = -(n + 1) per channel (Gu et al. 2022), D = 1, dt log-uniform in [1e-3, 0.1]."""
        self.A_log.copy_(torch.log(torch.arange(1, self.state_size + 1, dtype=torch.float32)).expand_as(self.A_log))
        self.D.fill_(1.0)
        w, b = (self.dt_proj.weight, self.dt_proj.bias) if self.heads == 1 else (self.dt_proj_weight,
                                                                                 self.dt_proj_bias)
        nn.init.uniform_(w, -self.dt_rank ** -0.5, self.dt_rank ** -0.5)
        init_dt_bias(b)
        self.conv1d.reset_parameters()

    def state_note(self, dtype: str) -> str:
        return "constant in the context; SSM states in fp32"

    def new_state(self, batch: int, max_len: int, dtype: torch.dtype, device) -> MixerState:
        return MixerState(conv=conv_state(batch, self.inner, self.conv1d.kernel_size[0], dtype, device),
                          ssm=torch.zeros(batch, self.inner, self.state_size, device=device))

    def forward(self, x: torch.Tensor, ctx=None) -> torch.Tensor:
        mask = token_mask(ctx, x)
        xs, z = self.in_proj(masked(x, mask)).chunk(2, dim=-1)
        state = self.cache
        xs = masked(F.silu(causal_conv(xs, self.conv1d.weight, self.conv1d.bias,
                                       None if state is None else state["conv"])), mask)
        if self.heads > 1:
            return self.out_proj(self._heads(xs, z, state).to(x.dtype))
        dt, B, C = self.x_proj(xs).split([self.dt_rank, self.state_size, self.state_size], dim=-1)
        if hasattr(self, "dt_norm"):
            dt, B, C = self.dt_norm(dt), self.b_norm(B), self.c_norm(C)
        dt = F.softplus(self.dt_proj(dt).float())
        A = -torch.exp(self.A_log.float())
        if state is not None and x.shape[1] == 1:
            y = selective_step(xs[:, 0], dt[:, 0], A, B[:, 0], C[:, 0], state["ssm"])[:, None]
            self.hook_ssm_state(state["ssm"])
        else:
            y, last = selective_scan(xs, dt, A, B, C, None if state is None else state["ssm"])
            if state is not None:
                state["ssm"].copy_(last)
            self.hook_ssm_state(last)
        y = (y + xs.float() * self.D.float()) * F.silu(z.float())
        return self.out_proj(y.to(x.dtype))

    def _heads(self, xs: torch.Tensor, z: torch.Tensor, state) -> torch.Tensor:
        """Zamba's slices: each its own Mamba over its P channels (xs, z (b, T, H·P) after the convolution)."""
        b, T, _ = xs.shape
        H, N = self.heads, self.state_size
        x = xs.view(b, T, H, -1)  # (b, T, H, P)
        dt, B, C = torch.einsum("hrp,bthp->bthr", self.x_proj_weight, x).split([self.dt_rank, N, N], dim=-1)
        dt = F.softplus(torch.einsum("hpr,bthr->bthp", self.dt_proj_weight, dt).float() + self.dt_proj_bias.float())
        A = -torch.exp(self.A_log.float())  # (H, P, N)
        h = None if state is None else state["ssm"].view(b, H, -1, N)
        if state is not None and T == 1:
            y = torch.stack([selective_step(x[:, 0, j], dt[:, 0, j], A[j], B[:, 0, j], C[:, 0, j], h[:, j])
                             for j in range(H)], dim=1)[:, None]  # (b, 1, H, P)
            self.hook_ssm_state(state["ssm"])
        else:
            parts = [selective_scan(x[:, :, j], dt[:, :, j], A[j], B[:, :, j], C[:, :, j],
                                    None if h is None else h[:, j]) for j in range(H)]
            y = torch.stack([p for p, _ in parts], dim=2)  # (b, T, H, P)
            last = torch.stack([last for _, last in parts], dim=1)  # (b, H, P, N)
            if h is not None:
                h.copy_(last)
            self.hook_ssm_state(last.flatten(1, 2))
        y = (y + x.float() * self.D.float()).flatten(2)
        return y * F.silu(z.float())
