"""Gated DeltaNet (Yang, Kautz & Hatamizadeh 2024, "Gated Delta Networks: Improving Mamba2 with Delta Rule",
arXiv 2412.06464), laid out as Qwen3-Next's linear-attention layers. Per value head, a state S (d_k x d_v; we
keep it key-major, as transformers and the FLA kernels do, the transpose of the paper's S) follows the gated
delta rule (paper eq. 10):

    S_t = alpha_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T,        o_t = S_t^T q_t

with q, k L2-normalised (and q scaled by d_k^-0.5), alpha_t = exp(g_t), g_t = -exp(A_log) * softplus(a_t + dt_bias)
(Mamba-2's decay, §3.2) and beta_t = sigmoid(b_t), the delta rule's step size: the state reads what it holds
for k_t, S^T k_t, and moves it towards v_t by beta_t.

Training and prefill run the chunked form (paper §3.3, the WY / UT-transform representation; DeltaNet,
Yang et al. 2024, §3): with u_t = beta_t (v_t - alpha_t S_{t-1}^T k_t) the state is S_t = alpha_t S_{t-1} + k_t u_t^T,
so inside a chunk of L tokens starting from S_0, with gamma_t = alpha_1 ... alpha_t and Gamma[t, s] = gamma_t / gamma_s,

    (I + A) U = beta V - (beta gamma K) S_0,     A = strictly-lower(diag(beta) K K^T * Gamma)     (a triangular solve)
    O = (gamma Q) S_0 + (lower(Q K^T * Gamma)) U,        S_L = gamma_L S_0 + (K gamma_L / gamma)^T U,

all matmuls inside a chunk and one step per chunk across them. Decoding runs the recurrence itself (`delta_step`).
The block (Qwen3-Next): in_proj_qkvz and in_proj_ba from x, a short causal depthwise convolution + SiLU over
(q, k, v), the delta rule, a per-head RMSNorm gated by SiLU(z), out_proj. Query/key heads may be fewer than value
heads, each serving a group of consecutive value heads (as grouped-query attention's keys serve query heads).
Shapes: b batch, T length, H value heads, K key heads, dk/dv key/value head dims."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LlmarchError
from .linear import Linear
from .mamba2 import segment_sum
from .mixer import MIXERS, Mixer
from .ssm import MixerState, causal_conv, check_recurrent, conv_state, depthwise_conv, init_dt_bias, masked, token_mask

SHAPE_FIELDS = ("delta_heads", "delta_value_heads", "delta_key_dim", "delta_value_dim")


def delta_shape(cfg) -> tuple[int, int, int, int]:
    """(key heads K, value heads H, dk, dv): the config's delta_* fields, or attention's heads and head_dim."""
    K = cfg.delta_heads or cfg.n_heads
    dk = cfg.delta_key_dim or cfg.head_dim
    return K, cfg.delta_value_heads or K, dk, cfg.delta_value_dim or dk


def l2norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x / sqrt(|x|^2 + eps) over the last dim (the FLA kernels' form, which transformers follows)."""
    return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + eps)


def chunk_delta_rule(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
                     S0: torch.Tensor | None = None, chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """The gated delta rule over a sequence, chunk by chunk (the module docstring's equations). q, k (b, T, H, dk)
    normalised and per value head; v (b, T, H, dv); g (log alpha) and beta (b, T, H); S0 (b, H, dk, dv) or None.
    Returns o (b, T, H, dv) and the final state (b, H, dk, dv), both fp32."""
    b, T, H, dk = k.shape
    dv = v.shape[-1]
    L = min(chunk, T)
    pad = -T % L  # padded steps: k = v = 0, beta = 0, g = 0, so the state passes through them unchanged
    q, k, v = (F.pad(t.float(), (0, 0, 0, 0, 0, pad)) for t in (q, k, v))
    g, beta = (F.pad(t.float(), (0, 0, 0, pad)) for t in (g, beta))
    n = (T + pad) // L
    q, k, v = (t.reshape(b, n, L, H, -1).permute(0, 3, 1, 2, 4) for t in (q, k, v))  # (b, H, n, L, d)
    g, beta = (t.reshape(b, n, L, H).permute(0, 3, 1, 2) for t in (g, beta))  # (b, H, n, L)
    cum = g.cumsum(-1)  # log gamma_t within each chunk
    decay = torch.exp(segment_sum(g))  # Gamma[t, s] = gamma_t / gamma_s for s <= t, 0 above: (b, H, n, L, L)
    kb = k * beta[..., None]
    eye = torch.eye(L, device=k.device)
    system = eye + (kb @ k.transpose(-1, -2) * decay).tril(-1)  # I + A, unit lower triangular
    U0 = torch.linalg.solve_triangular(system, v * beta[..., None], upper=False, unitriangular=True)
    W = torch.linalg.solve_triangular(system, kb * cum.exp()[..., None], upper=False, unitriangular=True)
    attn = q @ k.transpose(-1, -2) * decay  # lower(Q K^T * Gamma), the diagonal included
    q_start = q * cum.exp()[..., None]  # gamma_t q_t reads the chunk's starting state
    k_end = k * (cum[..., -1:] - cum).exp()[..., None]  # gamma_L / gamma_s k_s writes to its final state
    S = q.new_zeros(b, H, dk, dv) if S0 is None else S0.float()
    out = []
    for c in range(n):
        u = U0[:, :, c] - W[:, :, c] @ S  # (b, H, L, dv)
        out.append(q_start[:, :, c] @ S + attn[:, :, c] @ u)
        S = S * cum[:, :, c, -1].exp()[..., None, None] + k_end[:, :, c].transpose(-1, -2) @ u
    o = torch.stack(out, dim=2).reshape(b, H, n * L, dv).transpose(1, 2)
    return o[:, :T], S


def delta_step(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, beta: torch.Tensor,
               S: torch.Tensor) -> torch.Tensor:
    """One token of the recurrence: q, k (b, H, dk), v (b, H, dv), beta (b, H); g (log alpha) (b, H), one decay per
    head, or (b, H, dk), one per key channel (Kimi Delta Attention, kda.py); S (b, H, dk, dv) fp32, updated in
    place. S <- diag(alpha) S; S <- S + k (beta (v - S^T k))^T; returns o = S^T q (b, H, dv)."""
    alpha = g.float().exp()
    S.mul_(alpha.reshape(*alpha.shape[:2], -1, 1))  # (b, H, 1 or dk, 1): scales the state's key rows
    k = k.float()
    delta = beta.float()[..., None] * (v.float() - torch.einsum("bhkv,bhk->bhv", S, k))
    S.add_(k[..., None] * delta[..., None, :])
    return torch.einsum("bhkv,bhk->bhv", S, q.float())


class NormThenGate(nn.Module):
    """RMSNorm over each head's dv channels, then times act(z): w * norm(o) * act(z), act SiLU (Qwen3-Next's
    RMSNormGated; Mamba-2's norm gates first) or sigmoid (Kimi Linear's o_norm)."""

    def __init__(self, dim: int, eps: float, act=F.silu):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps, self.act = eps, act

    def forward(self, o: torch.Tensor, z: torch.Tensor) -> torch.Tensor:  # (..., dv) each
        h = o.float()
        h = self.weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)).to(o.dtype)
        return (h * self.act(z.float())).to(o.dtype)


@MIXERS.register("gated_deltanet")
class GatedDeltaNet(Mixer):
    @classmethod
    def check(cls, cfg) -> None:
        check_recurrent(cfg, "gated_deltanet", ("ssm_conv", "ssm_chunk"))
        for name in SHAPE_FIELDS:
            value = getattr(cfg, name)
            if value is not None and value <= 0:
                raise LlmarchError(f"{name} must be a positive integer, got {value}")
        if cfg.delta_norm_eps is not None and not cfg.delta_norm_eps > 0:
            raise LlmarchError(f"delta_norm_eps must be positive, got {cfg.delta_norm_eps}")
        K, H, _, _ = delta_shape(cfg)
        if H % K:
            raise LlmarchError(f"delta_value_heads={H} must be a multiple of delta_heads={K}")

    def __init__(self, cfg, layer: int = 0):
        super().__init__()
        K, H, dk, dv = delta_shape(cfg)
        self.key_heads, self.heads, self.dk, self.dv, self.chunk = K, H, dk, dv, cfg.ssm_chunk
        self.conv_dim = 2 * K * dk + H * dv
        # rows per key head: [q (dk), k (dk), v (H/K dv), z (H/K dv)] and [b (H/K), a (H/K)], Qwen3-Next's order
        self.in_proj_qkvz = Linear(cfg.d_model, 2 * K * dk + 2 * H * dv, bias=cfg.ssm_bias)
        self.in_proj_ba = Linear(cfg.d_model, 2 * H, bias=cfg.ssm_bias)
        self.conv1d = depthwise_conv(self.conv_dim, cfg.ssm_conv, cfg.ssm_conv_bias)  # channels: q, k, v
        self.dt_bias = nn.Parameter(torch.ones(H))
        self.A_log = nn.Parameter(torch.zeros(H))
        self.norm = NormThenGate(dv, cfg.norm_eps if cfg.delta_norm_eps is None else cfg.delta_norm_eps)
        self.beta_scale = 2.0 if cfg.delta_neg_eigval else 1.0  # delta_neg_eigval: beta in [0, 2]
        self.out_proj = Linear(H * dv, cfg.d_model, bias=cfg.ssm_bias)

    @torch.no_grad()
    def init_ssm(self) -> None:
        """A uniform in [0.01, 16] per head, dt = softplus(dt_bias) log-uniform in [1e-3, 0.1] (the FLA
        reference's initialisation, after Mamba-2)."""
        self.A_log.copy_(torch.empty_like(self.A_log).uniform_(0.01, 16).log())
        init_dt_bias(self.dt_bias)
        self.conv1d.reset_parameters()

    def state_note(self, dtype: str) -> str:
        return "constant in the context; delta-rule states in fp32"

    def new_state(self, batch: int, max_len: int, dtype: torch.dtype, device) -> MixerState:
        return MixerState(conv=conv_state(batch, self.conv_dim, self.conv1d.kernel_size[0], dtype, device),
                          delta=torch.zeros(batch, self.heads, self.dk, self.dv, device=device))

    def forward(self, x: torch.Tensor, ctx=None) -> torch.Tensor:
        b, T, _ = x.shape
        K, H, dk, dv, r = self.key_heads, self.heads, self.dk, self.dv, self.heads // self.key_heads
        mask = token_mask(ctx, x)
        x = masked(x, mask)
        q, k, v, z = self.in_proj_qkvz(x).view(b, T, K, -1).split([dk, dk, r * dv, r * dv], dim=-1)
        beta, a = self.in_proj_ba(x).view(b, T, K, 2 * r).split([r, r], dim=-1)
        state = self.cache
        qkv = torch.cat([q.flatten(2), k.flatten(2), v.flatten(2)], dim=-1)
        qkv = masked(F.silu(causal_conv(qkv, self.conv1d.weight, self.conv1d.bias,
                                        None if state is None else state["conv"])), mask)
        q, k, v = qkv.split([K * dk, K * dk, H * dv], dim=-1)
        # each query/key head serves r consecutive value heads
        q = (l2norm(q.view(b, T, K, dk).float()) * dk ** -0.5).repeat_interleave(r, dim=2)
        k = l2norm(k.view(b, T, K, dk).float()).repeat_interleave(r, dim=2)
        v = v.reshape(b, T, H, dv)
        beta = beta.reshape(b, T, H).sigmoid() * self.beta_scale
        g = -self.A_log.float().exp() * F.softplus(a.reshape(b, T, H).float() + self.dt_bias.float())
        if mask is not None:  # a padded token neither decays nor writes the state
            beta, g = beta * mask, g * mask
        if state is not None and T == 1:
            o = delta_step(q[:, 0], k[:, 0], v[:, 0], g[:, 0], beta[:, 0], state["delta"])[:, None]
        else:
            o, last = chunk_delta_rule(q, k, v, g, beta, None if state is None else state["delta"], self.chunk)
            if state is not None:
                state["delta"].copy_(last)
        o = self.norm(o.to(x.dtype), z.reshape(b, T, H, dv))
        return self.out_proj(o.flatten(2))
