"""RWKV-4 (Peng et al. 2023, "RWKV: Reinventing RNNs for the Transformer Era", §3.1), as transformers' Rwkv:
each RWKV layer is a time-mixing block and a channel-mixing block, each pre-norm and residual. Both read the token
shift, x'_t = mu x_t + (1 - mu) x_{t-1} with a learned mu per channel and per use (§3.1.1, "Token Shift"; x_{-1} = 0):
a two-tap convolution over time, so each is a sequence mixer here (mixer "rwkv" and "rwkv_channel"), and an RWKV
layer is two llmarch blocks with ffn 'none' (interop/rwkv.py lays them out).

Time mixing (mixer "rwkv"): r, k, v = W_r x'_r, W_k x'_k, W_v x'_v, and per channel the WKV operator (§3.1.2) with
a decay w = exp(time_decay) > 0 and a bonus u = time_first for the current token:

    wkv_t = (sum_{i<t} e^{-(t-1-i) w + k_i} v_i + e^{u + k_t} v_t) / (sum_{i<t} e^{-(t-1-i) w + k_i} + e^{u + k_t})
    o_t = W_o (sigmoid(r_t) * wkv_t)                                                  (§3.1.3, "Output Gating")

The sums are kept as a state (a, b, p): numerator and denominator divided by e^p, p the largest exponent so far
(the reference code's stabiliser; transformers' rwkv_linear_attention_cpu). Decoding is one step of it; training and
prefill run it in chunks of ssm_chunk tokens: inside a chunk the exponents above form an L x L matrix per channel
(with the chunk's starting state as one more term), stabilised by its row maxima, and the state moves once per chunk.

Channel mixing (mixer "rwkv_channel", §3.1.3): r, k = W_r x'_r, W_k x'_k; o_t = sigmoid(r_t) * W_v max(k_t, 0)^2.

A left-padded token's input is zeroed (so the first real token's shift reads 0, as a row alone does) and its key
writes nothing to the state. Decode state: the last input (both mixers) and (a, b, p) in fp32 (time mixing).
Shapes: b batch, T length, A channels of the WKV (attention_hidden_size = d_model here)."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import LlmarchError
from .linear import Linear
from .mixer import MIXERS, Mixer
from .ssm import MixerState, check_recurrent, masked, token_mask

EMPTY = -1e30  # p of an empty state (transformers' RwkvModel starts its max state here)
NEG_INF = float("-inf")


def token_shift(x: torch.Tensor, state: MixerState | None) -> torch.Tensor:
    """x_{t-1} for every t (B, T, C): zeros before the sequence, or the state's last input, which then becomes x's."""
    first = x.new_zeros(x.shape[0], 1, x.shape[2]) if state is None else state["shift"][:, None].to(x.dtype)
    shifted = torch.cat([first, x[:, :-1]], dim=1)
    if state is not None:
        state["shift"].copy_(x[:, -1])
    return shifted


def mix(x: torch.Tensor, shifted: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """mu x_t + (1 - mu) x_{t-1} (the token shift)."""
    return x * mu + shifted * (1 - mu)


def wkv_chunked(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor | None,
                state: tuple | None, chunk: int) -> tuple[torch.Tensor, tuple]:
    """The WKV over a sequence: w (A) the decay rates exp(time_decay), u (A); k, v (b, T, A) fp32; keep (b, T) bool,
    False where a padded key writes nothing, or None; state (a, b, p) each (b, A), or None (empty). Returns wkv
    (b, T, A) and the state after the last token."""
    B, T, A = k.shape
    L = min(chunk, T)
    j = torch.arange(L, device=k.device, dtype=k.dtype)
    decay = (j[None, :] - j[:, None] + 1)[..., None] * w  # (L, L, A): -(t-1-i) w for i < t
    below = torch.ones(L, L, dtype=torch.bool, device=k.device).tril(-1)[..., None]
    diag = torch.eye(L, dtype=torch.bool, device=k.device)[..., None]
    if state is None:
        num, den, p = k.new_zeros(B, A), k.new_zeros(B, A), k.new_full((B, A), EMPTY)
    else:
        num, den, p = (t.float() for t in state)
    out = []
    for s in range(0, T, L):
        kc, vc = k[:, s:s + L], v[:, s:s + L]
        n = kc.shape[1]
        writes = below[:n, :n] if keep is None else below[:n, :n] & keep[:, None, s:s + L, None]
        logw = torch.where(writes, kc[:, None] + decay[:n, :n], NEG_INF)  # (b, t, i, A)
        logw = torch.where(diag[:n, :n], (u + kc)[:, :, None], logw)  # the current token: e^{u + k_t}
        pre = p[:, None] - j[:n, None] * w  # the chunk's starting state at t: e^{p - t w}
        top = torch.maximum(logw.amax(2), pre)  # (b, t, A)
        e, e_pre = torch.exp(logw - top[:, :, None]), torch.exp(pre - top)
        out.append((e_pre * num[:, None] + (e * vc[:, None]).sum(2)) / (e_pre * den[:, None] + e.sum(2)))
        to_end = kc - (n - 1 - j[:n, None]) * w  # each key's exponent at the chunk's end: k_i - (n-1-i) w
        if keep is not None:
            to_end = to_end.masked_fill(~keep[:, s:s + L, None], NEG_INF)
        p_end = torch.maximum(to_end.amax(1), p - n * w)
        e_end, carry = torch.exp(to_end - p_end[:, None]), torch.exp(p - n * w - p_end)
        num, den, p = carry * num + (e_end * vc).sum(1), carry * den + e_end.sum(1), p_end
    return torch.cat(out, dim=1), (num, den, p)


def wkv_step(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor, state: MixerState) -> torch.Tensor:
    """One token of the WKV (transformers' recurrence): k, v (b, A) fp32; the state's a, b, p updated in place."""
    num, den, p = state["num"], state["den"], state["p"]
    top = torch.maximum(p, u + k)
    e1, e2 = torch.exp(p - top), torch.exp(u + k - top)
    wkv = (e1 * num + e2 * v) / (e1 * den + e2)
    top = torch.maximum(p - w, k)
    e1, e2 = torch.exp(p - w - top), torch.exp(k - top)
    num.mul_(e1).add_(e2 * v)
    den.mul_(e1).add_(e2)
    p.copy_(top)
    return wkv


def _check(cfg, name: str) -> None:
    check_recurrent(cfg, name, ("ssm_chunk",))


def _mu(d: int) -> nn.Parameter:
    return nn.Parameter(torch.full((1, 1, d), 0.5))  # stored (1, 1, d), as transformers' time_mix_*


def _mu_init(mu: nn.Parameter, power: float) -> None:
    """RWKV-4's token-shift init (transformers' _init_weights): (c / d)^power over the channels c."""
    d = mu.shape[-1]
    mu.copy_((torch.arange(d, dtype=torch.float32, device=mu.device) / d).pow(power).view(1, 1, d))


class MatrixStateTimeMix(Mixer):
    """RWKV-6's and RWKV-7's time mixing (rwkv6.py, rwkv7.py): their decode state, the last token's input (B, C) for
    the token shift and a (D, D) WKV matrix per head (B, H, D, D) in fp32, with C = H D (their checks)."""

    def new_state(self, batch: int, max_len: int, dtype: torch.dtype, device) -> MixerState:
        H, D = self.heads, self.head_dim
        return MixerState(shift=torch.zeros(batch, H * D, dtype=dtype, device=device),
                          wkv=torch.zeros(batch, H, D, D, device=device))

    def state_note(self, dtype: str) -> str:
        return "constant in the context; WKV states in fp32"

    def cache_note(self) -> str:
        return "RWKV layers keep no per-token cache"


@MIXERS.register("rwkv")
class RwkvTimeMix(Mixer):
    residual_out = ("output.weight",)
    no_decay = ("time_decay", "time_first", "time_mix_key", "time_mix_value", "time_mix_receptance")

    @classmethod
    def check(cls, cfg) -> None:
        _check(cfg, "rwkv")

    def __init__(self, cfg, layer: int = 0):
        super().__init__()
        d = cfg.d_model
        self.depth = layer / max(cfg.n_layers - 1, 1)  # 0 to 1 over the blocks (the init's layer ratio)
        self.chunk = cfg.ssm_chunk
        self.time_decay, self.time_first = nn.Parameter(torch.zeros(d)), nn.Parameter(torch.zeros(d))
        self.time_mix_key, self.time_mix_value, self.time_mix_receptance = _mu(d), _mu(d), _mu(d)
        self.key, self.value = Linear(d, d, bias=False), Linear(d, d, bias=False)
        self.receptance, self.output = Linear(d, d, bias=False), Linear(d, d, bias=False)

    @torch.no_grad()
    def init_ssm(self) -> None:
        """RWKV-4's initialisation (Peng et al. 2023, §3.5; transformers' _init_weights): decays from e^-5 to e^3
        over the channels, steeper in deeper layers; a bonus of 1; token shifts from (c/d)^1 to (c/d)^0."""
        d, r = self.time_decay.shape[0], self.depth
        h = torch.arange(d, dtype=torch.float32, device=self.time_decay.device)
        self.time_decay.copy_(-5 + 8 * (h / max(d - 1, 1)) ** (0.7 + 1.3 * r))
        self.time_first.fill_(1.0)
        _mu_init(self.time_mix_key, 1 - r)
        _mu_init(self.time_mix_value, 1 - r)
        self.time_mix_value.add_(0.3 * r)
        _mu_init(self.time_mix_receptance, 0.5 * (1 - r))

    def new_state(self, batch: int, max_len: int, dtype: torch.dtype, device) -> MixerState:
        d = self.time_decay.shape[0]
        return MixerState(shift=torch.zeros(batch, d, dtype=dtype, device=device),
                          num=torch.zeros(batch, d, device=device), den=torch.zeros(batch, d, device=device),
                          p=torch.full((batch, d), EMPTY, device=device))

    def state_note(self, dtype: str) -> str:
        return "constant in the context; WKV states in fp32"

    def cache_note(self) -> str:
        return "RWKV layers keep no per-token cache"

    def forward(self, x: torch.Tensor, ctx=None) -> torch.Tensor:
        mask = token_mask(ctx, x)
        x = masked(x, mask)  # a pad's input is zero: the next token's shift reads what a row alone reads
        state = self.cache
        shifted = token_shift(x, state)
        k = self.key(mix(x, shifted, self.time_mix_key)).float()
        v = self.value(mix(x, shifted, self.time_mix_value)).float()
        r = torch.sigmoid(self.receptance(mix(x, shifted, self.time_mix_receptance)))
        w, u = torch.exp(self.time_decay.float()), self.time_first.float()
        if state is not None and x.shape[1] == 1:
            wkv = wkv_step(w, u, k[:, 0], v[:, 0], state)[:, None]
        else:
            keep = None if mask is None else mask[..., 0].bool()
            wkv, last = wkv_chunked(w, u, k, v, keep, None if state is None else
                                    (state["num"], state["den"], state["p"]), self.chunk)
            if state is not None:
                for name, t in zip(("num", "den", "p"), last):
                    state[name].copy_(t)
        return self.output(r * wkv.to(x.dtype))


class ChannelMix(Mixer):
    """An RWKV channel mix (RWKV-4's, RWKV-7's): a feed-forward layer over a token-shifted input, whose only state
    when decoding is the last token's input (`width` channels)."""
    residual_out = ("value.weight",)
    width: int

    @staticmethod
    def check_hidden(cfg, kind: str) -> None:
        if cfg.ffn_hidden <= 0:
            raise LlmarchError(f"mixer {kind!r} needs a positive ffn_hidden, got {cfg.ffn_hidden}")

    def new_state(self, batch: int, max_len: int, dtype: torch.dtype, device) -> MixerState:
        return MixerState(shift=torch.zeros(batch, self.width, dtype=dtype, device=device))

    def state_note(self, dtype: str) -> str:
        return "token-shift inputs: constant in the context"

    def cache_note(self) -> str:
        return "RWKV layers keep no per-token cache"


@MIXERS.register("rwkv_channel")
class RwkvChannelMix(ChannelMix):
    no_decay = ("time_mix_key", "time_mix_receptance")

    @classmethod
    def check(cls, cfg) -> None:
        _check(cfg, "rwkv_channel")
        cls.check_hidden(cfg, "rwkv_channel")

    def __init__(self, cfg, layer: int = 0):
        super().__init__()
        d, hidden = cfg.d_model, cfg.ffn_hidden
        self.width, self.depth = d, layer / max(cfg.n_layers, 1)
        self.time_mix_key, self.time_mix_receptance = _mu(d), _mu(d)
        self.key, self.receptance = Linear(d, hidden, bias=False), Linear(d, d, bias=False)
        self.value = Linear(hidden, d, bias=False)

    @torch.no_grad()
    def init_ssm(self) -> None:
        _mu_init(self.time_mix_key, 1 - self.depth)
        _mu_init(self.time_mix_receptance, 1 - self.depth)

    def forward(self, x: torch.Tensor, ctx=None) -> torch.Tensor:
        x = masked(x, token_mask(ctx, x))
        shifted = token_shift(x, self.cache)
        k = torch.relu(self.key(mix(x, shifted, self.time_mix_key))).square()
        return torch.sigmoid(self.receptance(mix(x, shifted, self.time_mix_receptance))) * self.value(k)
