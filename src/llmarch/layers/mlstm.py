"""The mLSTM: xLSTM's matrix-memory cell (Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory", §2.3, eqs.
19-27), laid out as xLSTM-7B's mLSTM layer (Beck et al. 2025, "xLSTM 7B: A Recurrent LLM for Fast and Efficient
Inference", §3; transformers' xLSTMLayer). Per head, a matrix memory C (dk x dv), a normaliser n (dk) and a
stabiliser m (a scalar) follow, with q scaled by dk^-0.5:

    C_t = f_t C_{t-1} + i_t k_t v_t^T,    n_t = f_t n_{t-1} + i_t k_t                    (eqs. 19-20)
    h_t = C_t^T q_t / max(|n_t^T q_t|, 1)                                                 (eq. 21)
    i_t = exp(i~_t),  f_t = sigmoid(f~_t)                 exponential input gate, sigmoid forget gate (eqs. 25-26)

The exponential gate overflows, so the state is kept divided by exp(m_t) (the stabiliser of the sLSTM's eqs. 15-17,
applied to the mLSTM):

    m_t = max(log f_t + m_{t-1}, i~_t),   f'_t = exp(log f_t + m_{t-1} - m_t),   i'_t = exp(i~_t - m_t)
    C_t = f'_t C_{t-1} + i'_t k_t v_t^T,   n_t = f'_t n_{t-1} + i'_t k_t
    h_t = C_t^T q_t / (max(|n_t^T q_t|, exp(-m_t)) + eps)

from m_0 = 0 (eps, mlstm_eps, is added to the stabilised denominator, so m's path matters: it is the recurrence's
own, whichever form computes it). Training and prefill run the chunkwise form (xLSTM 7B's kernels; Beck et al. 2025,
"Tiled Flash Linear Attention"): with b_t the cumulative sum of log f_t within a chunk of L tokens that starts from
(C_0, n_0, m_0),

    m_t = max(b_t + m_0, max_{s<=t} (b_t - b_s + i~_s)),   D[t, s] = exp(b_t - b_s + i~_s - m_t) for s <= t
    num_t = exp(b_t + m_0 - m_t) C_0^T q_t + sum_s D[t, s] (q_t . k_s) v_s,  den_t likewise with n_0 and 1 for v

all matmuls inside a chunk, one state update per chunk across them. Decoding runs one step of the recurrence.
The layer (xLSTM-7B): q, k, v and an output gate o from x; the gates' pre-activations soft-capped
(mlstm_gate_softcap: 15); each head's h through a LayerNorm without bias (multihead_norm), times sigmoid(o), then
out_proj. A padded token neither decays nor writes the state (i~ = -inf, log f = 0).
Shapes: b batch, T length, H heads, dk/dv key/value head dims."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LlmarchError
from .gated_deltanet import delta_shape
from .linear import Linear
from .mixer import MIXERS, Mixer
from .softcap import soft_cap
from .ssm import MixerState, check_recurrent, token_mask

NEG_INF = float("-inf")


def mlstm_chunked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, i: torch.Tensor, logf: torch.Tensor,
                  state: tuple | None, chunk: int, eps: float) -> tuple[torch.Tensor, tuple]:
    """The chunkwise form over a sequence (module docstring). q (scaled), k (b, T, H, dk), v (b, T, H, dv); i (i~)
    and logf (log f) (b, T, H) fp32; state (C (b, H, dk, dv), n (b, H, dk), m (b, H)) or None (zeros). Returns h
    (b, T, H, dv) and the state after the last token, all fp32."""
    b, T, H, dk = q.shape
    dv = v.shape[-1]
    L = min(chunk, T)
    pad = -T % L  # padded steps write nothing (i~ = -inf) and do not decay (log f = 0)
    q, k, v = (F.pad(t.float(), (0, 0, 0, 0, 0, pad)) for t in (q, k, v))
    i, logf = F.pad(i, (0, 0, 0, pad), value=NEG_INF), F.pad(logf, (0, 0, 0, pad))
    nc = (T + pad) // L
    q, k, v = (t.reshape(b, nc, L, H, -1).permute(0, 3, 1, 2, 4) for t in (q, k, v))  # (b, H, nc, L, d)
    i, logf = (t.reshape(b, nc, L, H).permute(0, 3, 1, 2) for t in (i, logf))  # (b, H, nc, L)
    cum = logf.cumsum(-1)  # b_t
    causal = torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
    log_d = (cum[..., :, None] - cum[..., None, :] + i[..., None, :]).masked_fill(~causal, NEG_INF)  # (.., L, L)
    m_intra = log_d.amax(-1)  # max_{s<=t} (b_t - b_s + i~_s)
    to_end = cum[..., -1:] - cum + i  # b_L - b_s + i~_s: each token's log weight in the chunk's final state
    scores = q @ k.transpose(-1, -2) * causal  # (b, H, nc, L, L)
    if state is None:
        C, n, m = q.new_zeros(b, H, dk, dv), q.new_zeros(b, H, dk), q.new_zeros(b, H)
    else:
        C, n, m = (t.float() for t in state)
    out = []
    for c in range(nc):
        m_t = torch.maximum(cum[:, :, c] + m[..., None], m_intra[:, :, c])  # (b, H, L)
        w = scores[:, :, c] * torch.exp(log_d[:, :, c] - m_t[..., None])  # (q_t . k_s) D[t, s]
        inter = torch.exp(cum[:, :, c] + m[..., None] - m_t)[..., None]  # exp(b_t + m_0 - m_t)
        num = inter * (q[:, :, c] @ C) + w @ v[:, :, c]
        den = inter[..., 0] * (q[:, :, c] @ n[..., None])[..., 0] + w.sum(-1)
        out.append(num / (torch.maximum(den.abs(), torch.exp(-m_t)) + eps)[..., None])
        m_end = torch.maximum(cum[:, :, c, -1] + m, to_end[:, :, c].amax(-1))
        kw = k[:, :, c] * torch.exp(to_end[:, :, c] - m_end[..., None])[..., None]  # (b, H, L, dk)
        decay = torch.exp(cum[:, :, c, -1] + m - m_end)
        C = decay[..., None, None] * C + kw.transpose(-1, -2) @ v[:, :, c]
        n = decay[..., None] * n + kw.sum(-2)
        m = m_end
    h = torch.stack(out, dim=2).reshape(b, H, nc * L, dv).transpose(1, 2)
    return h[:, :T], (C, n, m)


def mlstm_step(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, i: torch.Tensor, logf: torch.Tensor,
               state: MixerState, eps: float) -> torch.Tensor:
    """One token of the stabilised recurrence: q (scaled), k (b, H, dk), v (b, H, dv), i, logf (b, H); the state's
    C, n, m (fp32) updated in place. Returns h (b, H, dv) fp32."""
    C, n, m = state["C"], state["n"], state["m"]
    m_new = torch.maximum(logf + m, i)
    f_act, i_act = torch.exp(logf + m - m_new), torch.exp(i - m_new)
    k, v, q = k.float(), v.float(), q.float()
    C.mul_(f_act[..., None, None]).add_(i_act[..., None, None] * k[..., :, None] * v[..., None, :])
    n.mul_(f_act[..., None]).add_(i_act[..., None] * k)
    m.copy_(m_new)
    den = (q * n).sum(-1)
    return torch.einsum("bhk,bhkv->bhv", q, C) / (torch.maximum(den.abs(), torch.exp(-m_new)) + eps)[..., None]


class HeadLayerNorm(nn.Module):
    """A LayerNorm without bias over each head's dv channels, its gains one vector over all heads (H * dv):
    xLSTM-7B's multihead_norm (the head-wise norm of the xLSTM paper's mLSTM block)."""

    def __init__(self, heads: int, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(heads * dim))
        self.dim, self.eps = dim, eps

    def forward(self, h: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:  # (b, T, H, dv) -> (b, T, H * dv)
        return F.layer_norm(h.float(), (self.dim,), eps=self.eps).to(dtype).flatten(2) * self.weight


@MIXERS.register("mlstm")
class MLSTM(Mixer):
    @classmethod
    def check(cls, cfg) -> None:
        check_recurrent(cfg, "mlstm", ("ssm_chunk",))
        K, H, dk, dv = delta_shape(cfg)
        if H != K or min(K, dk, dv) <= 0:
            raise LlmarchError(f"mixer 'mlstm' needs positive heads and dims, as many value heads as key heads "
                               f"(delta_value_heads={cfg.delta_value_heads}, delta_heads={K})")
        if cfg.mlstm_gate_softcap is not None and not cfg.mlstm_gate_softcap > 0:
            raise LlmarchError(f"mlstm_gate_softcap must be positive or None, got {cfg.mlstm_gate_softcap}")
        if not cfg.mlstm_eps >= 0:
            raise LlmarchError(f"mlstm_eps must be >= 0, got {cfg.mlstm_eps}")

    def __init__(self, cfg, layer: int = 0):
        super().__init__()
        _, H, dk, dv = delta_shape(cfg)
        d, bias = cfg.d_model, cfg.ssm_bias
        self.heads, self.dk, self.dv, self.chunk = H, dk, dv, cfg.ssm_chunk
        self.cap, self.eps = cfg.mlstm_gate_softcap, cfg.mlstm_eps
        self.q, self.k = Linear(d, H * dk, bias=bias), Linear(d, H * dk, bias=bias)
        self.v, self.ogate_preact = Linear(d, H * dv, bias=bias), Linear(d, H * dv, bias=bias)
        self.igate_preact, self.fgate_preact = Linear(d, H, bias=True), Linear(d, H, bias=True)
        self.multihead_norm = HeadLayerNorm(H, dv, cfg.norm_eps)
        self.out_proj = Linear(H * dv, d, bias=bias)

    @torch.no_grad()
    def init_ssm(self) -> None:
        """xLSTM-7B's gate initialisation (transformers' xLSTMPreTrainedModel): zero gate weights, input gates
        at exp(-10) (writing little at first), forget gates' biases from 3 to 6 over the heads (sigmoid 0.95 to
        0.998: long memories)."""
        for gate in (self.igate_preact, self.fgate_preact):
            nn.init.zeros_(gate.weight)
        self.igate_preact.bias.fill_(-10.0)
        self.fgate_preact.bias.copy_(torch.linspace(3.0, 6.0, self.heads))

    def state_note(self, dtype: str) -> str:
        return "constant in the context; mLSTM memories in fp32"

    def cache_note(self) -> str:
        return "mLSTM layers keep no per-token cache"

    def new_state(self, batch: int, max_len: int, dtype: torch.dtype, device) -> MixerState:
        H = self.heads
        return MixerState(C=torch.zeros(batch, H, self.dk, self.dv, device=device),
                          n=torch.zeros(batch, H, self.dk, device=device), m=torch.zeros(batch, H, device=device))

    def forward(self, x: torch.Tensor, ctx=None) -> torch.Tensor:
        b, T, _ = x.shape
        H, dk = self.heads, self.dk
        q = self.q(x).view(b, T, H, dk) * dk ** -0.5
        k, v = self.k(x).view(b, T, H, dk), self.v(x).view(b, T, H, self.dv)
        i = soft_cap(self.igate_preact(x), self.cap).float()  # (b, T, H): i~
        logf = F.logsigmoid(soft_cap(self.fgate_preact(x), self.cap).float())
        mask = token_mask(ctx, x)
        if mask is not None:  # a padded token writes nothing and does not decay the state
            i = i.masked_fill(mask == 0, NEG_INF)
            logf = logf * mask
        state = self.cache
        if state is not None and T == 1:
            h = mlstm_step(q[:, 0], k[:, 0], v[:, 0], i[:, 0], logf[:, 0], state, self.eps)[:, None]
        else:
            h, last = mlstm_chunked(q, k, v, i, logf, None if state is None else
                                    (state["C"], state["n"], state["m"]), self.chunk, self.eps)
            if state is not None:
                for name, t in zip("Cnm", last):
                    state[name].copy_(t)
        h = self.multihead_norm(h, x.dtype)
        return self.out_proj(torch.sigmoid(self.ogate_preact(x)) * h)
