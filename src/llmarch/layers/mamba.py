"""Mamba's selective state-space mixer (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective
State Spaces", Algorithm 2 and §3.4's block). Per channel d of the inner width and state dimension n:

    h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t          (zero-order-hold discretisation of h' = A h + B x,
    y_t = C_t . h_t + D x_t                             with the simplified dt B for B's, eq. 4 and §3.5)

A = -exp(A_log) (D_inner x N, diagonal, negative, so exp(dt A) < 1) is fixed; dt (softplus of a low-rank
projection), B and C (N each) depend on the input: the "selection" that lets the model keep or forget
per token. The block: in_proj to x and a gate z; x through a depthwise causal convolution (kernel 4) and
SiLU; the SSM; y * SiLU(z); out_proj. Jamba adds RMSNorms over dt, B and C (ssm_inner_norm).

The scan over the sequence is chunked and has no Python loop over time steps: within each chunk of L
positions a log-depth (Hillis-Steele) scan of the pairs (log decay, state), all chunks at once; then the
same scan over the chunks' totals gives each chunk's starting state, added back with its decay. Work
O(T D N log L), memory O(T D N) per layer: every position's state exists once, as in transformers'
PyTorch path. Generation runs the recurrence one token at a time (`step`): O(D N) per token, whatever the
context, with the convolution's last K-1 inputs and h as the state."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .norms import RMSNorm
from .ssm import (MIXERS, MixerState, causal_conv, conv_state, depthwise_conv, init_dt_bias, masked,
                  token_mask)


def _scan(log_a: torch.Tensor, b: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inclusive scan along `dim` of h_i = exp(log_a_i) h_{i-1} + b_i from h = 0, in ceil(log2 n) steps
    (Hillis & Steele 1986): after the step with offset k, element i combines positions i-2k+1..i. Returns
    the summed log decays and the states. log_a <= 0, so every exp() is at most 1: no overflow."""
    n, k = log_a.shape[dim], 1
    while k < n:
        head_a, head_b = log_a.narrow(dim, 0, k), b.narrow(dim, 0, k)
        prev_a, prev_b = log_a.narrow(dim, 0, n - k), b.narrow(dim, 0, n - k)
        cur_a, cur_b = log_a.narrow(dim, k, n - k), b.narrow(dim, k, n - k)
        b = torch.cat([head_b, cur_b + cur_a.exp() * prev_b], dim)
        log_a = torch.cat([head_a, cur_a + prev_a], dim)
        k *= 2
    return log_a, b


def selective_scan(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   h0: torch.Tensor | None = None, chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """The chunked parallel scan. x, dt (b, T, D); A (D, N); B, C (b, T, N); h0 (b, D, N) or None (zeros).
    Returns y_t = C_t . h_t (b, T, D) (without the D skip) and the last state h_T (b, D, N), in fp32."""
    b, T, D = x.shape
    x, dt, B, C = x.float(), dt.float(), B.float(), C.float()
    log_a = dt[..., None] * A  # (b, T, D, N)
    u = (dt * x)[..., None] * B[:, :, None, :]
    L = min(chunk, T)
    pad = -T % L  # padded steps decay by exp(0) = 1 and add 0: they carry the state unchanged
    if pad:
        log_a, u = F.pad(log_a, (0, 0, 0, 0, 0, pad)), F.pad(u, (0, 0, 0, 0, 0, pad))
    n = (T + pad) // L
    log_a, u = _scan(log_a.view(b, n, L, D, -1), u.view(b, n, L, D, -1), dim=2)  # within chunks, from zero
    chunk_a, chunk_h = _scan(log_a[:, :, -1], u[:, :, -1], dim=1)  # each chunk's end state, from zero
    if h0 is not None:
        chunk_h = chunk_h + chunk_a.exp() * h0.float()[:, None]
    start = torch.cat([(torch.zeros_like(chunk_h[:, :1]) if h0 is None else h0.float()[:, None]),
                       chunk_h[:, :-1]], dim=1)  # (b, n, D, N): the state each chunk starts from
    h = (u + log_a.exp() * start[:, :, None]).view(b, n * L, D, -1)[:, :T]
    y = torch.einsum("btdn,btn->btd", h, C)
    return y, h[:, -1]


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
class Mamba(nn.Module):
    def __init__(self, cfg, layer: int = 0):
        super().__init__()
        d, inner, N, R = cfg.d_model, cfg.ssm_expand * cfg.d_model, cfg.ssm_state, cfg.ssm_dt_rank
        self.inner, self.state_size, self.dt_rank, self.chunk = inner, N, R, cfg.ssm_chunk
        self.in_proj = nn.Linear(d, 2 * inner, bias=cfg.ssm_bias)  # rows: x, then the gate z
        self.conv1d = depthwise_conv(inner, cfg.ssm_conv, cfg.ssm_conv_bias)
        self.x_proj = nn.Linear(inner, R + 2 * N, bias=False)  # dt (low rank), B, C
        self.dt_proj = nn.Linear(R, inner, bias=True)
        self.A_log = nn.Parameter(torch.zeros(inner, N))
        self.D = nn.Parameter(torch.ones(inner))
        self.out_proj = nn.Linear(inner, d, bias=cfg.ssm_bias)
        if cfg.ssm_inner_norm:
            self.dt_norm, self.b_norm, self.c_norm = RMSNorm(R, cfg.norm_eps), RMSNorm(N, cfg.norm_eps), \
                RMSNorm(N, cfg.norm_eps)
        self.cache: MixerState | None = None

    @torch.no_grad()
    def init_ssm(self) -> None:
        """S4D-real A_n = -(n + 1) per channel (Gu et al. 2022), D = 1, dt log-uniform in [1e-3, 0.1]."""
        self.A_log.copy_(torch.log(torch.arange(1, self.state_size + 1, dtype=torch.float32)).expand_as(self.A_log))
        self.D.fill_(1.0)
        nn.init.uniform_(self.dt_proj.weight, -self.dt_rank ** -0.5, self.dt_rank ** -0.5)
        init_dt_bias(self.dt_proj.bias)
        self.conv1d.reset_parameters()

    def new_state(self, batch: int, dtype: torch.dtype, device) -> MixerState:
        return MixerState(conv=conv_state(batch, self.inner, self.conv1d.kernel_size[0], dtype, device),
                          ssm=torch.zeros(batch, self.inner, self.state_size, device=device))

    def forward(self, x: torch.Tensor, ctx=None) -> torch.Tensor:
        mask = token_mask(ctx, x)
        xs, z = self.in_proj(masked(x, mask)).chunk(2, dim=-1)
        state = self.cache
        xs = masked(F.silu(causal_conv(xs, self.conv1d.weight, self.conv1d.bias,
                                       None if state is None else state["conv"])), mask)
        dt, B, C = self.x_proj(xs).split([self.dt_rank, self.state_size, self.state_size], dim=-1)
        if hasattr(self, "dt_norm"):
            dt, B, C = self.dt_norm(dt), self.b_norm(B), self.c_norm(C)
        dt = F.softplus(self.dt_proj(dt).float())
        A = -torch.exp(self.A_log.float())
        if state is not None and x.shape[1] == 1:
            y = selective_step(xs[:, 0], dt[:, 0], A, B[:, 0], C[:, 0], state["ssm"])[:, None]
        else:
            y, last = selective_scan(xs, dt, A, B, C, None if state is None else state["ssm"], self.chunk)
            if state is not None:
                state["ssm"].copy_(last)
        y = (y + xs.float() * self.D.float()) * F.silu(z.float())
        return self.out_proj(y.to(x.dtype))
