"""RWKV-7 "Goose" (Peng et al. 2025, "RWKV-7 'Goose' with Expressive Dynamic State Evolution", arXiv 2503.14456, §4),
as RWKV-LM and llama.cpp's rwkv7 graph compute it. Each RWKV-7 layer is a time-mixing block (mixer "rwkv7") and a
channel-mixing block (mixer "rwkv7_channel"), each pre-LayerNorm and residual, both reading the token shift as RWKV-4
does (layers/rwkv.py), here as a lerp toward the previous token: x^_t = x_t + (x_{t-1} - x_t) * mu, one mu per use.

Time mixing, per token (the paper's §4.1 "weight preparation", per head h of D channels):

    r = W_r x^r,  k = W_k x^k,  v = W_v x^v
    w = exp(-e^{-0.5} sigmoid(w0 + W2 tanh(W1 x^w)))            decay in (e^{-e^{-0.5}}, 1), per channel
    a = sigmoid(a0 + A2 A1 x^a)                                 in-context learning rate
    g = G2 sigmoid(G1 x^g)                                      output gate
    v = v + (v_first - v) sigmoid(v0 + V2 V1 x^v)               value residual (not in block 0, whose v is v_first:
                                                                ctx.carry hands it to the later layers)
    kk = normalize(k * k_k)                                     removal key, L2-normalised per head
    k = k * (1 + (a - 1) * k_a)                                 replacement key

and the generalized delta rule (§4.2), a state S (D x D, value rows, key columns) per head:

    S_t = S_{t-1} (diag(w_t) - kk_t^T (a_t * kk_t)) + v_t^T k_t,        y_t = S_t r_t

then a group norm per head (rwkv7_group_norm_eps; none with rwkv7_group_norm False), the bonus (r_t . (k_t * r_k)) v_t
per head, times g (none with rwkv7_gate False: ARWKV's time mixing may have neither), through W_o. In fp32.

Decoding runs the recurrence one step at a time (`wkv7`). Training and prefill run it in chunks of L = ssm_chunk
tokens (`wkv7_chunked`; the diagonal-plus-low-rank delta rule's chunked form, as flash-linear-attention chunks RWKV-7,
DeltaNet's WY representation with a decay per channel): with x = -kk and y = kk * a the rule is
S_t = S_{t-1} diag(w_t) + z_t y_t^T + v_t k_t^T, z_t = S_{t-1} x_t, so inside a chunk from state S_0, with
Gamma_t = w_1 ... w_t per channel,

    (I - A_xy) Z = (x Gamma_{t-1}) S_0^T + A_xk V,      A_xy[t, s] = sum_c x_tc y_sc Gamma_{t-1,c} / Gamma_sc   (s < t)
    Y = (r Gamma) S_0^T + P_ry Z + P_rk V,              P_ry[t, s] = sum_c r_tc y_sc Gamma_tc / Gamma_sc        (s <= t)
    S_L = S_0 diag(Gamma_L) + Z^T (y Gamma_L / Gamma) + V^T (k Gamma_L / Gamma)

(A_xk, P_rk the same with k for y): matrix products and one triangular solve a chunk. RWKV-7's decay is at least
e^{-e^{-0.5}} a step, so 1 / Gamma_t <= e^{L e^{-0.5}} and the products factor as (x Gamma_{t-1}) (y / Gamma_s)^T
without overflow for L up to 128 (MAX_CHUNK).

Channel mixing (mixer "rwkv7_channel"): k = W_k x^k, o = W_v max(k, 0)^2: one lerp, no receptance gate (RWKV-4's
rwkv_channel has both).

A left-padded token's input is zeroed (its shift reads 0, as a row alone does): its k, v and removal key are then 0,
so the state, empty before a row's first real token, stays empty. Decode state: the last input (both mixers) and S in
fp32 (time mixing). Shapes: B batch, T length, H heads, D head_dim, C = H D."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LlmarchError
from .linear import Linear
from .mixer import MIXERS
from .rwkv import ChannelMix, MatrixStateTimeMix, token_shift
from .ssm import check_recurrent, masked, token_mask

LERPS = ("r", "w", "k", "v", "a", "g")  # the order of x_x's rows (RWKV-LM's x_r ... x_g; llama.cpp's fused lerp;
# without the gate, the first five)
DECAY_SCALE = math.exp(-0.5)  # w = exp(-e^{-0.5} sigmoid(.)): the decay stays within [e^{-e^{-0.5}}, 1]
MAX_CHUNK = 128  # the chunked form's 1 / Gamma reaches e^(L e^{-0.5}): e^78 at 128, fp32's range ends near e^88
V_FIRST = "rwkv7_v_first"  # ctx.carry's key for the first layer's values


def lora_rank(d: int, exponent: float, multiplier: float) -> int:
    """RWKV-7's LoRA size for width d: max(1, round(d^e m / 32)) 32 (RWKV-LM; llama.cpp's calc_lora_rank)."""
    return max(1, round(d ** exponent * multiplier / 32)) * 32


def ranks(cfg) -> tuple[int, int, int, int]:
    """(decay, in-context learning rate, value residual, gate) LoRA ranks: the config's, else RWKV-7's sizes."""
    d = cfg.d_model
    return (cfg.rwkv7_decay_rank or lora_rank(d, 0.5, 1.8), cfg.rwkv7_iclr_rank or lora_rank(d, 0.5, 1.8),
            cfg.rwkv7_value_rank or lora_rank(d, 0.5, 1.3), cfg.rwkv7_gate_rank or lora_rank(d, 0.8, 0.6))


def wkv7(r: torch.Tensor, w: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kk: torch.Tensor, a: torch.Tensor,
         S: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The generalized delta rule over a sequence, one token a step: r, w (the decay), k, v, kk, a (B, T, H, D) fp32;
    S (B, H, D, D) (value rows, key columns) or None (zeros). Returns y (B, T, H, D) and the last state."""
    B, T, H, D = k.shape
    S = k.new_zeros(B, H, D, D) if S is None else S.float()
    ys = []
    for t in range(T):
        removed = S @ kk[:, t, :, :, None]  # (B, H, D, 1): what the state holds for the removal key
        S = S * w[:, t, :, None, :] - removed * (kk[:, t] * a[:, t])[:, :, None, :] \
            + v[:, t, :, :, None] * k[:, t, :, None, :]
        ys.append((S @ r[:, t, :, :, None])[..., 0])
    return torch.stack(ys, dim=1), S


def wkv7_chunked(r: torch.Tensor, logw: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kk: torch.Tensor,
                 a: torch.Tensor, S: torch.Tensor | None, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """wkv7 in chunks of `chunk` tokens (the module docstring's chunked form), logw the log decay; the same
    arguments and results. Padded steps (r = k = v = kk = 0, logw = 0) leave the state as it was."""
    B, T, H, D = k.shape
    L = min(chunk, T)
    pad = -T % L
    n = (T + pad) // L
    r, g, k, v, x, y = (F.pad(t.float(), (0, 0, 0, 0, 0, pad)).reshape(B, n, L, H, D).permute(0, 3, 1, 2, 4)
                        for t in (r, logw, k, v, -kk, kk * a))  # (B, H, n, L, D); x, y: removal and write keys
    G = g.cumsum(3)  # log Gamma_t within each chunk, >= -L e^{-0.5}: its exponentials stay finite
    grow, shrink, prev = G.exp(), (-G).exp(), (G - g).exp()  # Gamma_t, 1 / Gamma_t, Gamma_{t-1}
    below = torch.ones(L, L, dtype=torch.bool, device=k.device).tril(-1)
    upto = torch.ones(L, L, dtype=torch.bool, device=k.device).tril()
    ys, ks = y * shrink, k * shrink
    A_xy = ((x * prev) @ ys.transpose(-1, -2)).masked_fill(~below, 0)  # x_t Gamma_{t-1} / Gamma_s y_s, s < t
    A_xk = ((x * prev) @ ks.transpose(-1, -2)).masked_fill(~below, 0)
    P_ry = ((r * grow) @ ys.transpose(-1, -2)).masked_fill(~upto, 0)  # r_t Gamma_t / Gamma_s y_s, s <= t
    P_rk = ((r * grow) @ ks.transpose(-1, -2)).masked_fill(~upto, 0)
    solve = torch.eye(L, device=k.device) - A_xy  # z = S_{t-1} x_t: (I - A_xy) Z = (x Gamma_{t-1}) S_0^T + A_xk V
    W = torch.linalg.solve_triangular(solve, x * prev, upper=False, unitriangular=True)
    U = torch.linalg.solve_triangular(solve, A_xk @ v, upper=False, unitriangular=True)
    to_end = (G[..., -1:, :] - G).exp()  # Gamma_L / Gamma_s
    S = k.new_zeros(B, H, D, D) if S is None else S.float()
    out = []
    for c in range(n):
        St = S.transpose(-1, -2)  # (B, H, key, value)
        z = W[:, :, c] @ St + U[:, :, c]
        out.append((r[:, :, c] * grow[:, :, c]) @ St + P_ry[:, :, c] @ z + P_rk[:, :, c] @ v[:, :, c])
        S = S * grow[:, :, c, -1:] + z.transpose(-1, -2) @ (y[:, :, c] * to_end[:, :, c]) \
            + v[:, :, c].transpose(-1, -2) @ (k[:, :, c] * to_end[:, :, c])
    return torch.stack(out, dim=2).reshape(B, H, n * L, D).transpose(1, 2)[:, :T], S


@MIXERS.register("rwkv7")
class Rwkv7TimeMix(MatrixStateTimeMix):
    residual_out = ("output.weight",)
    no_decay = ("x_x", "w0", "a0", "v0", "k_k", "k_a", "r_k")

    @classmethod
    def check(cls, cfg) -> None:
        check_recurrent(cfg, "rwkv7", ("ssm_chunk",))
        if cfg.ssm_chunk > MAX_CHUNK:
            raise LlmarchError(f"mixer 'rwkv7' chunks of ssm_chunk={cfg.ssm_chunk} tokens: at most {MAX_CHUNK}, "
                               "whose decays' products e^(L e^-0.5) stay finite in fp32")
        if cfg.n_heads * cfg.head_dim != cfg.d_model:
            raise LlmarchError(f"mixer 'rwkv7' needs n_heads x head_dim = d_model, got {cfg.n_heads} x "
                               f"{cfg.head_dim} != {cfg.d_model}")
        for name in ("rwkv7_decay_rank", "rwkv7_iclr_rank", "rwkv7_value_rank", "rwkv7_gate_rank"):
            if getattr(cfg, name) is not None and getattr(cfg, name) <= 0:
                raise LlmarchError(f"{name} must be a positive integer, got {getattr(cfg, name)}")
        if not cfg.rwkv7_group_norm_eps > 0:
            raise LlmarchError(f"rwkv7_group_norm_eps must be positive, got {cfg.rwkv7_group_norm_eps}")

    def __init__(self, cfg, layer: int = 0):
        super().__init__()
        C, H = cfg.d_model, cfg.n_heads
        decay, iclr, value, gate = ranks(cfg)
        self.heads, self.head_dim, self.chunk = H, cfg.head_dim, cfg.ssm_chunk
        self.depth = layer / max(cfg.n_layers - 1, 1)  # 0 to 1 over the blocks (the init's layer ratio)
        self.first = layer == 0  # block 0's values are v_first, the later layers' value residual
        self.gate = cfg.rwkv7_gate
        self.x_x = nn.Parameter(torch.zeros(len(LERPS) - (not self.gate), C))  # the shift's mu per use, LERPS' order
        self.w0 = nn.Parameter(torch.zeros(C))
        self.w1, self.w2 = Linear(C, decay, bias=False), Linear(decay, C, bias=False)
        self.a0 = nn.Parameter(torch.zeros(C))
        self.a1, self.a2 = Linear(C, iclr, bias=False), Linear(iclr, C, bias=False)
        if not self.first:
            self.v0 = nn.Parameter(torch.ones(C))
            self.v1, self.v2 = Linear(C, value, bias=False), Linear(value, C, bias=False)
        if self.gate:
            self.g1, self.g2 = Linear(C, gate, bias=False), Linear(gate, C, bias=False)
        self.k_k, self.k_a = nn.Parameter(torch.full((C,), 0.85)), nn.Parameter(torch.ones(C))
        self.r_k = nn.Parameter(torch.zeros(C))  # the bonus's weights, per head and channel (H x D)
        self.receptance, self.key = Linear(C, C, bias=False), Linear(C, C, bias=False)
        self.value, self.output = Linear(C, C, bias=False), Linear(C, C, bias=False)
        self.ln_x = nn.GroupNorm(H, C, eps=cfg.rwkv7_group_norm_eps) if cfg.rwkv7_group_norm else None

    @torch.no_grad()
    def init_ssm(self) -> None:
        """RWKV-LM's RWKV-7 initialisation: token shifts 1 - (c/C)^(p (1 - depth)), decay biases from -6.5 to -1.5
        over the channels (steeper deeper), the removal key's scale 0.85, no bonus, the value gate open."""
        C, r = self.w0.shape[0], self.depth
        c = torch.arange(C, dtype=torch.float32, device=self.w0.device) / C
        powers = torch.tensor([0.2, 0.9, 0.7, 0.7, 0.9, 0.2][:self.x_x.shape[0]], device=self.w0.device)[:, None]
        self.x_x.copy_(1 - c[None].pow(powers * (1 - r)))
        self.w0.copy_(-7 + 5 * (torch.arange(C, device=c.device) / max(C - 1, 1)) ** (0.85 + r ** 0.5) + 0.5)
        self.a0.zero_()
        self.r_k.zero_()
        self.k_k.fill_(0.85)
        self.k_a.fill_(1.0)
        if not self.first:
            self.v0.fill_(1.0)

    def forward(self, x: torch.Tensor, ctx=None) -> torch.Tensor:
        B, T, C = x.shape
        H, D = self.heads, self.head_dim
        mask = token_mask(ctx, x)
        x = masked(x, mask)
        state = self.cache
        shifted = token_shift(x, state)
        xr, xw, xk, xv, xa, *xg = x + (shifted - x) * self.x_x[:, None, None].to(x.dtype)
        r, k, v = self.receptance(xr), self.key(xk), self.value(xv)
        w = -DECAY_SCALE * torch.sigmoid(self.w0 + self.w2(torch.tanh(self.w1(xw)))).float()  # log decay
        if self.first:
            if ctx is not None:
                ctx.carry[V_FIRST] = v
        else:
            if ctx is None or V_FIRST not in ctx.carry:
                raise LlmarchError("an rwkv7 layer after the first reads the first layer's values (v_first) from "
                                   "the forward's context")
            v = v + (ctx.carry[V_FIRST] - v) * torch.sigmoid(self.v0 + self.v2(self.v1(xv)))
        a = torch.sigmoid(self.a0 + self.a2(self.a1(xa)))
        kk = F.normalize((k * self.k_k).view(B, T, H, D).float(), dim=-1, eps=1e-12)
        k = k * (1 + (a - 1) * self.k_a)
        heads = [t.view(B, T, H, D).float() for t in (r, k, v, a)]
        S = None if state is None else state["wkv"]
        if state is not None and T == 1:  # decoding: one step of the recurrence
            y, last = wkv7(heads[0], w.view(B, T, H, D).exp(), heads[1], heads[2], kk, heads[3], S)
        else:
            y, last = wkv7_chunked(heads[0], w.view(B, T, H, D), heads[1], heads[2], kk, heads[3], S, self.chunk)
        if state is not None:
            state["wkv"].copy_(last)
        y = y.to(x.dtype)
        if self.ln_x is not None:
            y = self.ln_x(y.reshape(B * T, C)).view(B, T, H, D)
        bonus = (heads[0] * heads[1] * self.r_k.view(H, D)).sum(-1, keepdim=True) * heads[2]  # (r . k r_k) v
        o = (y + bonus.to(x.dtype)).reshape(B, T, C)
        return self.output(o * self.g2(torch.sigmoid(self.g1(xg[0]))) if self.gate else o)


@MIXERS.register("rwkv7_channel")
class Rwkv7ChannelMix(ChannelMix):
    no_decay = ("x_k",)

    @classmethod
    def check(cls, cfg) -> None:
        check_recurrent(cfg, "rwkv7_channel", ())
        cls.check_hidden(cfg, "rwkv7_channel")

    def __init__(self, cfg, layer: int = 0):
        super().__init__()
        d = cfg.d_model
        self.width, self.depth = d, layer / max(cfg.n_layers, 1)
        self.x_k = nn.Parameter(torch.zeros(d))
        self.key, self.value = Linear(d, cfg.ffn_hidden, bias=False), Linear(cfg.ffn_hidden, d, bias=False)

    @torch.no_grad()
    def init_ssm(self) -> None:
        """RWKV-LM's: the shift 1 - (c/C)^((1 - depth)^4)."""
        C = self.x_k.shape[0]
        c = torch.arange(C, dtype=torch.float32, device=self.x_k.device) / C
        self.x_k.copy_(1 - c.pow((1 - self.depth) ** 4))

    def forward(self, x: torch.Tensor, ctx=None) -> torch.Tensor:
        x = masked(x, token_mask(ctx, x))
        shifted = token_shift(x, self.cache)
        return self.value(torch.relu(self.key(x + (shifted - x) * self.x_k)).square())
