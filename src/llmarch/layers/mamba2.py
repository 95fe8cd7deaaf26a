"""Mamba-2's SSD mixer (Dao & Gu 2024, "Transformers are SSMs", §6-7 and Listing 1). The state matrix is a
scalar per head, A_t = exp(dt_t a_h), so the SSM over a sequence is a matrix y = M x with

    M[t, s] = C_t . B_s * exp(sum_{r=s+1..t} dt_r a_h) * dt_s     for s <= t (a "semiseparable" matrix),

heads of P channels sharing (B_t, C_t) within a group (like grouped-query attention's keys). The chunked
algorithm (SSD, §6) splits the sequence into chunks of L: inside each, M's diagonal block as a masked
matmul (quadratic in L, attention-like); across chunks, each chunk's final state, passed along by the
chunks' total decays (a T/L x T/L decay matrix), and read out by C. All matmuls, no loop over time.
The block: one in_proj to the gate z, x, B, C and dt; a depthwise causal convolution and SiLU over
(x, B, C); the SSM plus D x; a gated RMSNorm, norm(y * SiLU(z)) per group; out_proj.
Falcon-H1's variants (TII 2025, "Falcon-H1: A Family of Hybrid-Head Language Models"), each a config field: an inner
width of its own (ssm_inner, not a multiple of d_model), its five muP multipliers on in_proj's z, x, B, C and dt
parts (ssm_proj_multipliers, constants: no weight holds them), and the norm after the gate or before it, or none
(ssm_norm).
Zamba2's clamp (Glorioso et al. 2024; the reference code's dt_limit lower end, its time_step_min): each step
dt >= ssm_dt_floor after the softplus, in the whole-sequence scan and in each decoding step alike.
Generation runs the recurrence h_t = exp(dt a) h_{t-1} + dt x_t B_t^T, y_t = h_t C_t + D x_t per head
(`step`), state (heads, P, N) per sequence."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LlmarchError
from .hooks import HookPoint
from .linear import Linear
from .mixer import MIXERS, Mixer
from .ssm import (MixerState, causal_conv, check_recurrent, conv_state, depthwise_conv, init_dt_bias, masked,
                  token_mask)


def segment_sum(a: torch.Tensor) -> torch.Tensor:
    """(..., L) -> (..., L, L): out[i, j] = a[j+1] + ... + a[i] for j <= i, -inf above the diagonal. Summed
    per entry (a masked cumsum), not as a difference of two cumsums, which would lose precision."""
    L = a.shape[-1]
    x = a[..., :, None].expand(*a.shape, L)  # x[i, j] = a[i]
    x = x.masked_fill(~torch.ones(L, L, dtype=torch.bool, device=a.device).tril(-1), 0).cumsum(dim=-2)
    return x.masked_fill(~torch.ones(L, L, dtype=torch.bool, device=a.device).tril(), float("-inf"))


def ssd_scan(x: torch.Tensor, dt: torch.Tensor, a: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
             h0: torch.Tensor | None = None, chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """x (b, T, H, P); dt (b, T, H) (after softplus); a (H,) negative; B, C (b, T, H, N) (already per head);
    h0 (b, H, P, N) or None. Returns y (b, T, H, P) (without D x) and the final state (b, H, P, N), fp32."""
    b, T, H, P = x.shape
    x, dt, B, C = x.float(), dt.float(), B.float(), C.float()
    L = min(chunk, T)
    pad = -T % L
    la = dt * a  # (b, T, H) log decays
    xs = x * dt[..., None]
    if pad:  # padded steps: zero input, zero log decay (the state passes through)
        la, xs = F.pad(la, (0, 0, 0, pad)), F.pad(xs, (0, 0, 0, 0, 0, pad))
        B, C = F.pad(B, (0, 0, 0, 0, 0, pad)), F.pad(C, (0, 0, 0, 0, 0, pad))
    n = (T + pad) // L
    xs, B, C = (t.reshape(b, n, L, H, -1) for t in (xs, B, C))
    la = la.reshape(b, n, L, H).permute(0, 3, 1, 2)  # (b, H, n, L)
    cum = la.cumsum(dim=-1)
    # 1. within each chunk: the diagonal blocks of M
    decay = torch.exp(segment_sum(la))  # (b, H, n, L, L)
    y = torch.einsum("bclhn,bcshn,bhcls,bcshp->bclhp", C, B, decay, xs)
    # 2. each chunk's final state from its own inputs
    to_end = torch.exp(cum[..., -1:] - cum)  # (b, H, n, L)
    states = torch.einsum("bclhn,bhcl,bclhp->bchpn", B, to_end, xs)
    # 3. the states at chunk boundaries: a recurrence over chunks, as one matmul with the chunks' decays
    first = torch.zeros_like(states[:, :1]) if h0 is None else h0.float()[:, None]
    states = torch.cat([first, states], dim=1)  # (b, n + 1, H, P, N)
    chunk_decay = torch.exp(segment_sum(F.pad(cum[..., -1], (1, 0))))  # (b, H, n + 1, n + 1)
    states = torch.einsum("bhzc,bchpn->bzhpn", chunk_decay, states)
    starts, last = states[:, :-1], states[:, -1]
    # 4. each position reads its chunk's starting state, decayed to it
    y = y + torch.einsum("bclhn,bchpn,bhcl->bclhp", C, starts, torch.exp(cum))
    return y.reshape(b, n * L, H, P)[:, :T], last


def ssd_step(x: torch.Tensor, dt: torch.Tensor, a: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
             h: torch.Tensor) -> torch.Tensor:
    """One token: x (b, H, P), dt (b, H), B, C (b, H, N); h (b, H, P, N) fp32, updated in place."""
    dt = dt.float()
    h.copy_(torch.exp(dt * a)[..., None, None] * h + (dt[..., None] * x.float())[..., None] * B.float()[:, :, None])
    return torch.einsum("bhpn,bhn->bhp", h, C.float())


class GatedRMSNorm(nn.Module):
    """norm(y * SiLU(z)) over groups of channels, times a gain (Mamba-2's norm before out_proj); with
    before_gate, norm(y) times the gain, then times SiLU(z) (Falcon-H1's mamba_norm_before_gate)."""

    def __init__(self, dim: int, groups: int, eps: float, before_gate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.groups, self.eps, self.before_gate = groups, eps, before_gate

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = y.float() if self.before_gate else y.float() * F.silu(z.float())
        h = h.unflatten(-1, (self.groups, -1))
        h = (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)).flatten(-2)
        if self.before_gate:
            return (self.weight * h * F.silu(z.float())).to(y.dtype)
        return self.weight * h.to(y.dtype)


def silu_gate(y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """y * SiLU(z) with no norm (ssm_norm 'none': Falcon-H1 without mamba_rms_norm)."""
    return (y.float() * F.silu(z.float())).to(y.dtype)


SSM_NORMS = ("gated", "norm_gate", "none")


def inner_width(cfg) -> int:
    """Mamba-2's inner width: ssm_inner (Falcon-H1's d_ssm; Nemotron-H's heads x head width), or
    ssm_expand * d_model."""
    return cfg.ssm_inner if cfg.ssm_inner is not None else cfg.ssm_expand * cfg.d_model


@MIXERS.register("mamba2")
class Mamba2(Mixer):
    @classmethod
    def check(cls, cfg) -> None:
        check_recurrent(cfg, "mamba2", ("ssm_state", "ssm_expand", "ssm_conv", "ssm_head_dim", "ssm_groups",
                                        "ssm_chunk"))
        inner = inner_width(cfg)
        if inner <= 0 or inner % cfg.ssm_head_dim or (inner // cfg.ssm_head_dim) % cfg.ssm_groups:
            raise LlmarchError(f"mamba2: inner width {inner} must split into heads of ssm_head_dim="
                               f"{cfg.ssm_head_dim}, their number divisible by ssm_groups={cfg.ssm_groups}")
        if cfg.ssm_norm not in SSM_NORMS:
            raise LlmarchError(f"unknown ssm_norm {cfg.ssm_norm!r}; choose one of: {', '.join(SSM_NORMS)}")
        if cfg.ssm_dt_floor < 0:
            raise LlmarchError(f"ssm_dt_floor must be >= 0, got {cfg.ssm_dt_floor}")
        m = cfg.ssm_proj_multipliers
        if m is not None and (len(m) != 5 or not all(isinstance(v, (int, float)) and v > 0 for v in m)):
            raise LlmarchError(f"ssm_proj_multipliers must be five positive numbers (z, x, B, C, dt), got {m!r}")

    def __init__(self, cfg, layer: int = 0):
        super().__init__()
        d, inner, N, G = cfg.d_model, inner_width(cfg), cfg.ssm_state, cfg.ssm_groups
        self.inner, self.state_size, self.groups, self.chunk = inner, N, G, cfg.ssm_chunk
        self.head_dim, self.heads = cfg.ssm_head_dim, inner // cfg.ssm_head_dim
        self.conv_dim = inner + 2 * G * N
        self.in_proj = Linear(d, inner + self.conv_dim + self.heads, bias=cfg.ssm_bias)  # z, (x, B, C), dt
        self.conv1d = depthwise_conv(self.conv_dim, cfg.ssm_conv, cfg.ssm_conv_bias)
        self.dt_bias = nn.Parameter(torch.zeros(self.heads))
        self.A_log = nn.Parameter(torch.zeros(self.heads))
        self.D = nn.Parameter(torch.ones(self.heads))
        # the gated norm, or (ssm_norm 'none') no module, so no norm.weight either, as transformers' nn.Identity
        self.norm = None if cfg.ssm_norm == "none" else \
            GatedRMSNorm(inner, G, cfg.norm_eps, before_gate=cfg.ssm_norm == "norm_gate")
        m = cfg.ssm_proj_multipliers  # split sizes and constants of in_proj's z, x, B, C, dt; None: not multiplied
        self.proj_scales = None if m is None or all(v == 1 for v in m) else \
            ([inner, inner, G * N, G * N, self.heads], [float(v) for v in m])
        self.out_proj = Linear(inner, d, bias=cfg.ssm_bias)
        self.dt_floor = cfg.ssm_dt_floor or None  # None: no clamp at all
        self.hook_ssm_state = HookPoint()  # analysis: the SSM state (B, H, P, N) after the call's last token

    @torch.no_grad()
    def init_ssm(self) -> None:
        """a_h = -(h + 1), D = 1, dt log-uniform in [1e-3, 0.1] (the reference implementation's init)."""
        self.A_log.copy_(torch.log(torch.arange(1, self.heads + 1, dtype=torch.float32)))
        self.D.fill_(1.0)
        init_dt_bias(self.dt_bias)
        self.conv1d.reset_parameters()

    def state_note(self, dtype: str) -> str:
        return "constant in the context; SSM states in fp32"

    def new_state(self, batch: int, max_len: int, dtype: torch.dtype, device) -> MixerState:
        return MixerState(conv=conv_state(batch, self.conv_dim, self.conv1d.kernel_size[0], dtype, device),
                          ssm=torch.zeros(batch, self.heads, self.head_dim, self.state_size, device=device))

    def forward(self, x: torch.Tensor, ctx=None) -> torch.Tensor:
        b, T, _ = x.shape
        mask = token_mask(ctx, x)
        z, xbc, dt = self._projected(masked(x, mask))
        state = self.cache
        xbc = masked(F.silu(causal_conv(xbc, self.conv1d.weight, self.conv1d.bias,
                                        None if state is None else state["conv"])), mask)
        GN = self.groups * self.state_size
        xs, B, C = xbc.split([self.inner, GN, GN], dim=-1)
        xs = xs.view(b, T, self.heads, self.head_dim)
        per_group = self.heads // self.groups  # heads of a group share B and C
        B = B.view(b, T, self.groups, -1).repeat_interleave(per_group, dim=2)
        C = C.view(b, T, self.groups, -1).repeat_interleave(per_group, dim=2)
        dt = F.softplus(dt.float() + self.dt_bias.float())
        if self.dt_floor is not None:
            dt = dt.clamp(min=self.dt_floor)
        a = -torch.exp(self.A_log.float())
        if state is not None and T == 1:
            y = ssd_step(xs[:, 0], dt[:, 0], a, B[:, 0], C[:, 0], state["ssm"])[:, None]
            self.hook_ssm_state(state["ssm"])
        else:
            y, last = ssd_scan(xs, dt, a, B, C, None if state is None else state["ssm"], self.chunk)
            if state is not None:
                state["ssm"].copy_(last)
            self.hook_ssm_state(last)
        y = y + xs.float() * self.D.float()[:, None]
        norm = self._modules.get("norm")
        return self.out_proj((silu_gate if norm is None else norm)(y.flatten(2).to(x.dtype), z))

    def _projected(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """in_proj's z, (x, B, C) and dt, each part times its multiplier where ssm_proj_multipliers are set."""
        zxbcdt = self.in_proj(x)
        if self.proj_scales is None:
            return zxbcdt.split([self.inner, self.conv_dim, self.heads], dim=-1)
        z, xs, B, C, dt = (t * m for t, m in zip(zxbcdt.split(self.proj_scales[0], dim=-1), self.proj_scales[1]))
        return z, torch.cat((xs, B, C), dim=-1), dt
