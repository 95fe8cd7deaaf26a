"""RWKV-6 "Finch" (Peng et al. 2024, "Eagle and Finch: RWKV with Matrix-Valued States and Dynamic Recurrence",
arXiv 2404.05892, §4-5), as RWKV-LM, the RWKV/v6-Finch-*-HF remote code and llama.cpp's rwkv6 graph compute it. Each
RWKV-6 layer is a time-mixing block (mixer "rwkv6") and a channel-mixing block (mixer "rwkv_channel", layers/rwkv.py:
RWKV-6's channel mix is RWKV-4's, ReLU^2 with a receptance gate, its lerps stored as 1 - mu; interop/rwkv6.py), each
pre-LayerNorm and residual.

Time mixing, per token, with xx_t = x_{t-1} - x_t the token shift's difference (Finch's data dependence, §5):

    ddlerp: m_* = (tanh((x + xx mu_x) W1) W2)_*,  x^* = x + xx (mu_* + m_*)     for * in w, k, v, r, g (the
                                                  data-dependent token shift, one LoRA of rank rwkv6_mix_rank
                                                  whose five outputs are W2's five slices)
    r = W_r x^r,  k = W_k x^k,  v = W_v x^v,  g = SiLU(W_g x^g)
    d = d0 + tanh(x^w D1) D2,  w = exp(-exp(d))                                 (the decay, per channel, a LoRA of
                                                                                rank rwkv6_decay_rank)

and per head h of D channels a state S (D x D, key rows, value columns), with the bonus u = time_faaaa (Eagle's
matrix-valued state, §4):

    y_t = r_t (diag(u) k_t^T v_t + S_{t-1}),     S_t = diag(w_t) S_{t-1} + k_t^T v_t

then a group norm per head (eps 64e-5: the HF code's 1e-5 head_size_divisor^2 and llama.cpp's), times g, through
W_o. In fp32.

QRWKV6 (rwkv6_qrwkv; llama.cpp's rwkv6qwen2 graph where a file has no time_mix_first): the same token shifts and
decay, keys scaled k (1 - w), no bonus, y_t = D^-1/2 r_t S_t (the state read after the current token's update: a
gated linear attention), no group norm, g = sigmoid(W_g x^g); keys and values of n_kv_heads heads, each serving
n_heads / n_kv_heads heads; biases on r, k, v by qkv_bias.

Chunked form (`wkv6_chunked`, training, prefill and decoding alike): in a chunk of L = ssm_chunk tokens from state
S_0, with G_t = sum_{s<=t} log w_s per channel (G_{t-1} = 0 at the chunk's start),

    y_t = sum_{s<t} (sum_c r_tc k_sc e^{G_{t-1,c} - G_sc}) v_s + (r_t . u k_t) v_t + (r_t e^{G_{t-1}}) S_0
    S_L = diag(e^{G_L}) S_0 + sum_s (k_s e^{G_L - G_s})^T v_s

every exponent <= 0 (RWKV-6's decay may reach 0 in one step, so the factored Gamma_t / Gamma_s of rwkv7.py would
overflow): the L x L x D decays are formed whole, memory B H T L D a chunk's worth at a time.

A left-padded token's input is zeroed (its shift reads 0, as a row alone does) and its key too (a key bias would
write it): the state, empty before a row's first real token, stays empty (its decay scales zeros). Decode state: the
last input and S in fp32. Shapes: B batch, T length, H heads, D head_dim, C = H D, n chunks of L."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LlmarchError
from .linear import Linear
from .mixer import MIXERS
from .rwkv import MatrixStateTimeMix, token_shift
from .ssm import check_recurrent, masked, token_mask

LERPS = ("w", "k", "v", "r", "g")  # the ddlerp's uses in W2's order (the HF code's mw, mk, mv, mr, mg; llama.cpp's)
GROUP_NORM_EPS = 64e-5
FINAL_NORM_EPS = 1e-5  # the HF code's nn.LayerNorm(hidden_size) for ln_out (llama.cpp's takes the layers' eps)


def default_ranks(d: int) -> tuple[int, int]:
    """The released models' (token shift, decay) LoRA ranks for width d (the HF code's; llama.cpp's converter's)."""
    return (64, 128) if d == 4096 else (32, 64)


def wkv6_chunked(r: torch.Tensor, logw: torch.Tensor, k: torch.Tensor, v: torch.Tensor, u: torch.Tensor | None,
                 S: torch.Tensor | None, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The WKV over a sequence in chunks of `chunk` tokens (the module docstring's form): r, logw (log w <= 0), k, v
    (B, T, H, D); u (H, D), or None for QRWKV's gated linear attention (y_t = r_t S_t: the current token's decay
    applies to the state before it is read, its own key and value enter as with u = 1); S (B, H, D, D) (key rows,
    value columns) or None (zeros). Returns y (B, T, H, D) fp32 and the state after the last token. Padded steps
    (k = 0, logw = 0) leave the state as it was."""
    B, T, H, D = k.shape
    L = min(chunk, T)
    pad = -T % L
    n = (T + pad) // L
    r, g, k, v = (F.pad(t.float(), (0, 0, 0, 0, 0, pad)).reshape(B, n, L, H, D).permute(0, 3, 1, 2, 4)
                  for t in (r, logw, k, v))  # (B, H, n, L, D)
    G = g.cumsum(3)
    prev = G if u is None else G - g  # the decay through the token before t (RWKV-6), through t (QRWKV)
    below = torch.ones(L, L, dtype=torch.bool, device=k.device).tril(-1)[..., None]  # s < t
    decays = torch.where(below, prev[..., :, None, :] - G[..., None, :, :], float("-inf")).exp()  # (B, H, n, L, L, D)
    A = torch.einsum("bhntc,bhnsc,bhntsc->bhnts", r, k, decays)
    A = A + torch.diag_embed((r * k if u is None else r * u.float()[:, None, None] * k).sum(-1))  # the current token
    y = A @ v  # within each chunk
    to_end = (G[..., -1:, :] - G).exp()  # e^{G_L - G_s}
    S = k.new_zeros(B, H, D, D) if S is None else S.float()
    out = []
    for c in range(n):
        out.append(y[:, :, c] + (r[:, :, c] * prev[:, :, c].exp()) @ S)
        S = G[:, :, c, -1, :, None].exp() * S + (k[:, :, c] * to_end[:, :, c]).transpose(-1, -2) @ v[:, :, c]
    return torch.stack(out, dim=2).reshape(B, H, n * L, D).transpose(1, 2)[:, :T], S


def _row(C: int) -> nn.Parameter:
    return nn.Parameter(torch.zeros(1, 1, C))  # (1, 1, C), as the HF checkpoints store time_maa_* and time_decay


@MIXERS.register("rwkv6")
class Rwkv6TimeMix(MatrixStateTimeMix):
    residual_out = ("output.weight",)
    no_decay = ("time_maa_x", "time_maa_w", "time_maa_k", "time_maa_v", "time_maa_r", "time_maa_g", "time_decay",
                "time_faaaa")

    @classmethod
    def check(cls, cfg) -> None:
        check_recurrent(cfg, "rwkv6", ("ssm_chunk", "rwkv6_mix_rank", "rwkv6_decay_rank"))
        if cfg.n_heads * cfg.head_dim != cfg.d_model:
            raise LlmarchError(f"mixer 'rwkv6' needs n_heads x head_dim = d_model, got {cfg.n_heads} x "
                               f"{cfg.head_dim} != {cfg.d_model}")

    def __init__(self, cfg, layer: int = 0):
        super().__init__()
        C, H, M, R = cfg.d_model, cfg.n_heads, cfg.rwkv6_mix_rank, cfg.rwkv6_decay_rank
        self.heads, self.kv_heads, self.head_dim, self.chunk = H, cfg.n_kv_heads, cfg.head_dim, cfg.ssm_chunk
        self.qrwkv = cfg.rwkv6_qrwkv
        kv = cfg.n_kv_heads * cfg.head_dim
        self.depth = layer / max(cfg.n_layers - 1, 1)  # 0 to 1 over the blocks (the init's layer ratio)
        self.time_maa_x = _row(C)
        self.time_maa_w, self.time_maa_k, self.time_maa_v, self.time_maa_r, self.time_maa_g = (_row(C) for _ in LERPS)
        self.time_maa_w1 = nn.Parameter(torch.zeros(C, len(LERPS) * M))  # (in, 5 M), as RWKV-LM stores it
        self.time_maa_w2 = nn.Parameter(torch.zeros(len(LERPS), M, C))
        self.time_decay = _row(C)
        self.time_decay_w1, self.time_decay_w2 = nn.Parameter(torch.zeros(C, R)), nn.Parameter(torch.zeros(R, C))
        if not self.qrwkv:
            self.time_faaaa = nn.Parameter(torch.zeros(H, cfg.head_dim))  # the bonus u per head
            self.ln_x = nn.GroupNorm(H, C, eps=GROUP_NORM_EPS)
        self.receptance = Linear(C, C, bias=cfg.qkv_bias)
        self.key, self.value = Linear(C, kv, bias=cfg.qkv_bias), Linear(C, kv, bias=cfg.qkv_bias)
        self.gate, self.output = Linear(C, C, bias=False), Linear(C, C, bias=False)

    @torch.no_grad()
    def init_ssm(self) -> None:
        """RWKV-LM's RWKV-6 initialisation (the HF code's _init_weights): token shifts 1 - (c/C)^(1 - depth) (r and g
        with half the power, v 0.3 depth lower), the LoRAs within 1e-4 of zero, decay biases from -6 to -1 over the
        channels (steeper deeper), bonuses (1 - c/(C-1)) depth + 0.1 ((c+1) mod 3 - 1)."""
        C, r = self.time_decay.shape[-1], self.depth
        c = torch.arange(C, dtype=torch.float32, device=self.time_decay.device)
        shift = (c / C).pow(1 - r)
        for mu, value in ((self.time_maa_x, shift), (self.time_maa_w, shift), (self.time_maa_k, shift),
                          (self.time_maa_v, shift + 0.3 * r), (self.time_maa_r, (c / C).pow(0.5 * (1 - r))),
                          (self.time_maa_g, (c / C).pow(0.5 * (1 - r)))):
            mu.copy_((1 - value).view(1, 1, C))
        for p in (self.time_maa_w1, self.time_maa_w2, self.time_decay_w1, self.time_decay_w2):
            p.uniform_(-1e-4, 1e-4)
        self.time_decay.copy_((-6 + 5 * (c / max(C - 1, 1)) ** (0.7 + 1.3 * r)).view(1, 1, C))
        if not self.qrwkv:
            self.time_faaaa.copy_(((1 - c / max(C - 1, 1)) * r + 0.1 * ((c + 1) % 3 - 1)).view_as(self.time_faaaa))

    def forward(self, x: torch.Tensor, ctx=None) -> torch.Tensor:
        B, T, C = x.shape
        H, D = self.heads, self.head_dim
        mask = token_mask(ctx, x)
        x = masked(x, mask)
        state = self.cache
        xx = token_shift(x, state) - x
        m = torch.tanh((x + xx * self.time_maa_x) @ self.time_maa_w1).view(B, T, len(LERPS), -1)
        m = torch.einsum("btfm,fmc->fbtc", m, self.time_maa_w2)  # the five LoRA outputs m_w ... m_g
        mu = torch.stack([self.time_maa_w, self.time_maa_k, self.time_maa_v, self.time_maa_r, self.time_maa_g])
        xw, xk, xv, xr, xg = x + xx * (mu + m)
        r, k, v = self.receptance(xr), masked(self.key(xk), mask), self.value(xv)  # a pad's key 0 despite a bias
        logw = -(self.time_decay + torch.tanh(xw @ self.time_decay_w1) @ self.time_decay_w2).float().exp()
        r, logw, k, v = (t.reshape(B, T, -1, D) for t in (r, logw, k, v))
        if self.kv_heads != H:  # grouped keys and values: each serves H / kv_heads heads, as llama.cpp repeats them
            k, v = (t.repeat_interleave(H // self.kv_heads, dim=2) for t in (k, v))
        if self.qrwkv:  # QRWKV6: keys scaled by 1 - w, receptances by D^-1/2 (llama.cpp's gated linear attention)
            k, r = k * (1 - logw.exp()).to(k.dtype), r * D ** -0.5
        u = None if self.qrwkv else self.time_faaaa
        y, last = wkv6_chunked(r, logw, k, v, u, None if state is None else state["wkv"], self.chunk)
        if state is not None:
            state["wkv"].copy_(last)
        y = y.to(x.dtype).reshape(B, T, C)
        if self.qrwkv:
            return self.output(y * torch.sigmoid(self.gate(xg)))
        return self.output(self.ln_x(y.reshape(B * T, C)).view(B, T, C) * F.silu(self.gate(xg)))
