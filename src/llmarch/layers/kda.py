"""Kimi Delta Attention (KDA; Kimi Team 2025, "Kimi Linear: An Expressive, Efficient Attention Architecture",
arXiv 2510.26692, §3), the linear-attention mixer of Kimi Linear. It is Gated DeltaNet's rule (gated_deltanet.py)
with a decay per key channel instead of one per head (paper eq. 1, our state key-major as there):

    S_t = (I - beta_t k_t k_t^T) Diag(alpha_t) S_{t-1} + beta_t k_t v_t^T,        o_t = S_t^T q_t

alpha_t in (0, 1)^dk, alpha_t = exp(g_t), g_t = -exp(A_log_h) * softplus(f_b(f_a(x_t)) + dt_bias), a low-rank
projection per channel (rank dk) with one A per head (Ling 3: a full-rank f_proj, kda_full_gates, and the bounded
g_t = b * sigmoid(exp(A_log_h) * (f(x_t) + dt_bias)), kda_gate_bound); beta_t = sigmoid(b_proj x_t) per head;
q, k L2-normalised (q scaled by dk^-0.5) after a short causal convolution + SiLU on each of q, k, v (q_conv1d,
k_conv1d, v_conv1d). The output is RMSNorm per head times sigmoid(g_b(g_a(x))), a low-rank output gate (paper eq.
4's gated norm; Ling 3: a full-rank g_proj), then o_proj. A mixer of its own rather than a switch on
GatedDeltaNet: the projections, both gates, the norm's activation and the chunked form all differ; what the two
share (l2norm, the one-token step, the gated norm, the convolution and state) is imported from there.

Chunked form (prefill, training): as gated_deltanet.py's, with Gamma per channel. Inside a chunk of L tokens from
state S_0, with G_t = g_1 + ... + g_t per channel and D[c, t, s] = exp(G_tc - G_sc) for s <= t,

    (I + A) U = beta V - (beta e^G * K) S_0,      A[t, s] = beta_t sum_c k_tc k_sc D[c, t, s]   (s < t)
    O = (e^G * Q) S_0 + P U,   P[t, s] = sum_c q_tc k_sc D[c, t, s] (s <= t),   S_L = e^G_L S_0 + (e^(G_L - G) * K)^T U

D is formed per chunk (dk x L x L per head, every entry <= 1, so nothing overflows; a difference of per-channel
cumulative sums, unlike the factorised forms that overflow under strong decay), so memory grows with the chunk,
not with the sequence. Shapes: b batch, T length, H heads, dk = dv head dims."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LlmarchError
from .gated_deltanet import NormThenGate, SHAPE_FIELDS, delta_shape, delta_step, l2norm
from .linear import Linear
from .mamba2 import segment_sum
from .mixer import MIXERS, Mixer
from .ssm import MixerState, causal_conv, check_recurrent, conv_state, depthwise_conv, init_dt_bias, masked, token_mask


def chunk_kda(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
              S0: torch.Tensor | None = None, chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """KDA over a sequence, chunk by chunk (the module docstring's equations). q, k (b, T, H, dk) normalised;
    v (b, T, H, dv); g (log alpha) (b, T, H, dk); beta (b, T, H); S0 (b, H, dk, dv) or None. Returns o
    (b, T, H, dv) and the final state (b, H, dk, dv), both fp32."""
    b, T, H, dk = k.shape
    L = min(chunk, T)
    pad = -T % L  # padded steps: k = v = 0, beta = 0, g = 0, so the state passes through them unchanged
    q, k, v, g = (F.pad(t.float(), (0, 0, 0, 0, 0, pad)).transpose(1, 2) for t in (q, k, v, g))  # (b, H, T', d)
    beta = F.pad(beta.float(), (0, 0, 0, pad)).transpose(1, 2)  # (b, H, T')
    S = q.new_zeros(b, H, dk, v.shape[-1]) if S0 is None else S0.float()
    eye = torch.eye(L, device=k.device)
    out = []
    for c in range(0, T + pad, L):
        qc, kc, vc, gc, bc = (t[:, :, c:c + L] for t in (q, k, v, g, beta))
        G = gc.cumsum(2)  # (b, H, L, dk)
        D = torch.exp(segment_sum(gc.transpose(-1, -2)))  # (b, H, dk, L, L): D[c, t, s], zero above the diagonal
        kb = kc * bc[..., None]
        A = torch.einsum("bhtc,bhsc,bhcts->bhts", kb, kc, D).tril(-1)
        P = torch.einsum("bhtc,bhsc,bhcts->bhts", qc, kc, D)
        U = torch.linalg.solve_triangular(eye + A, vc * bc[..., None] - (kb * G.exp()) @ S, upper=False,
                                          unitriangular=True)
        out.append((qc * G.exp()) @ S + P @ U)
        S = S * G[:, :, -1].exp()[..., None] + (kc * (G[:, :, -1:] - G).exp()).transpose(-1, -2) @ U
    return torch.cat(out, dim=2).transpose(1, 2)[:, :T], S


@MIXERS.register("kda")
class KimiDeltaAttention(Mixer):
    residual_out = ("o_proj.weight",)

    @classmethod
    def check(cls, cfg) -> None:
        check_recurrent(cfg, "kda", ("ssm_conv", "ssm_chunk"))
        for name in SHAPE_FIELDS:
            value = getattr(cfg, name)
            if value is not None and value <= 0:
                raise LlmarchError(f"{name} must be a positive integer, got {value}")
        K, H, dk, dv = delta_shape(cfg)
        if H != K or dv != dk:
            raise LlmarchError(f"mixer='kda' has one width and count of heads for queries, keys and values: "
                               f"delta_value_heads={H} must equal delta_heads={K} and delta_value_dim={dv} must equal "
                               f"delta_key_dim={dk}")
        if cfg.ssm_bias:
            raise LlmarchError("mixer='kda' has no projection biases (ssm_bias=True)")
        if cfg.kda_gate_bound is not None and not cfg.kda_gate_bound < 0:
            raise LlmarchError(f"kda_gate_bound must be negative (a log-decay's lower end), got {cfg.kda_gate_bound}")

    def __init__(self, cfg, layer: int = 0):
        super().__init__()
        _, H, dk, _ = delta_shape(cfg)
        d, C = cfg.d_model, H * dk
        self.heads, self.dk, self.chunk = H, dk, cfg.ssm_chunk
        self.q_proj, self.k_proj, self.v_proj = (Linear(d, C, bias=False) for _ in range(3))
        self.q_conv1d, self.k_conv1d, self.v_conv1d = (depthwise_conv(C, cfg.ssm_conv, cfg.ssm_conv_bias)
                                                       for _ in range(3))
        # the decay's and the output gate's projections: full-rank (kda_full_gates, Ling 3) or through rank dk (Kimi)
        if cfg.kda_full_gates:
            self.f_proj, self.g_proj = Linear(d, C, bias=False), Linear(d, C, bias=False)
        else:
            self.f_a_proj, self.f_b_proj = Linear(d, dk, bias=False), Linear(dk, C, bias=False)
            self.g_a_proj, self.g_b_proj = Linear(d, dk, bias=False), Linear(dk, C, bias=False)
        self.bound = cfg.kda_gate_bound
        self.A_log = nn.Parameter(torch.zeros(H))
        self.dt_bias = nn.Parameter(torch.ones(C))
        self.b_proj = Linear(d, H, bias=False)
        self.o_norm = NormThenGate(dk, cfg.norm_eps, torch.sigmoid)
        self.o_proj = Linear(C, d, bias=False)

    @torch.no_grad()
    def init_ssm(self) -> None:
        """A uniform in [1, 16] per head, dt = softplus(dt_bias) log-uniform in [1e-3, 0.1] per channel (the FLA
        reference's initialisation, which transformers follows)."""
        self.A_log.copy_(torch.empty_like(self.A_log).uniform_(1, 16).log())
        init_dt_bias(self.dt_bias)
        for conv in (self.q_conv1d, self.k_conv1d, self.v_conv1d):
            conv.reset_parameters()

    def state_note(self, dtype: str) -> str:
        return "constant in the context; delta-rule states in fp32"

    def new_state(self, batch: int, max_len: int, dtype: torch.dtype, device) -> MixerState:
        C = self.heads * self.dk
        return MixerState(conv=conv_state(batch, 3 * C, self.q_conv1d.kernel_size[0], dtype, device),
                          delta=torch.zeros(batch, self.heads, self.dk, self.dk, device=device))

    def _conv(self, x: torch.Tensor, state) -> torch.Tensor:
        """The three short convolutions as one depthwise convolution over [q, k, v] channels, then SiLU."""
        convs = (self.q_conv1d, self.k_conv1d, self.v_conv1d)
        weight = torch.cat([c.weight for c in convs])
        bias = torch.cat([c.bias for c in convs]) if self.q_conv1d.bias is not None else None
        return F.silu(causal_conv(x, weight, bias, None if state is None else state["conv"]))

    def forward(self, x: torch.Tensor, ctx=None) -> torch.Tensor:
        b, T, _ = x.shape
        H, dk = self.heads, self.dk
        mask = token_mask(ctx, x)
        x = masked(x, mask)
        state = self.cache
        qkv = masked(self._conv(torch.cat([self.q_proj(x), self.k_proj(x), self.v_proj(x)], dim=-1), state), mask)
        q, k, v = (t.reshape(b, T, H, dk) for t in qkv.chunk(3, dim=-1))
        q, k = l2norm(q.float()) * dk ** -0.5, l2norm(k.float())
        a = self._gate(x, "f").float().view(b, T, H, dk) + self.dt_bias.float().view(H, dk)
        if self.bound is None:
            g = -self.A_log.float().exp()[:, None] * F.softplus(a)  # (b, T, H, dk): log alpha per channel
        else:  # kda_gate_bound: a bounded log-decay, in (bound, 0)
            g = self.bound * torch.sigmoid(self.A_log.float().exp()[:, None] * a)
        beta = self.b_proj(x).float().sigmoid()  # (b, T, H)
        if mask is not None:  # a padded token's k = v = 0 writes nothing; g = 0 keeps it from decaying the state
            g = g * mask[..., None]
        if state is not None and T == 1:
            o = delta_step(q[:, 0], k[:, 0], v[:, 0], g[:, 0], beta[:, 0], state["delta"])[:, None]
        else:
            o, last = chunk_kda(q, k, v, g, beta, None if state is None else state["delta"], self.chunk)
            if state is not None:
                state["delta"].copy_(last)
        o = self.o_norm(o.to(x.dtype), self._gate(x, "g").view(b, T, H, dk))
        return self.o_proj(o.flatten(2))

    def _gate(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """The decay's (f) or the output gate's (g) projection of x, full-rank or low-rank."""
        sub = self._modules
        full = sub.get(f"{name}_proj")
        return full(x) if full is not None else sub[f"{name}_b_proj"](sub[f"{name}_a_proj"](x))
