"""Compressed Convolutional Attention's projections (CCA; Figliolia et al. 2025, arXiv 2510.04476, as ZAYA1 runs it:
transformers' ZayaCCAProjection and ZayaQKNorm), then softmax attention of any kind that keeps a KV cache (full,
sliding window). Per token t, with H query heads and K key/value heads of width D (G = H / K queries per key):

    q_t = x_t W_q (H D),  k_t = x_t W_k (K D)
    [q~; k~] = conv_g(conv_d([q; k]))     conv_d: depthwise over time, cca_conv taps; conv_g: cca_group_conv taps
                                          mixing the D channels of each head (H + K groups); both biased, causal
    r_h = (q_h + k_{h // G}) / 2,   q_h <- q~_h + r_h,   k_j <- k~_j + mean_{h in group j} r_h
    v_t = [x_t W_vc ; x_{t-1} W_vd]       half the value channels from this token, half from the previous one
                                          (the first K/2 heads from x_t, the rest from x_{t-1}: concatenated, then
                                          split into heads, as ZAYA does; x_{-1} = 0)
    q <- sqrt(D) q / |q|,  k <- tau_j sqrt(D) k / |k|    per head; tau a learned scale per key head (ZAYA's QK-norm)

then RoPE and attention (scale 1/sqrt(D), or attn_scale). The convolution and the delayed values make the keys and
values of token t depend on the tokens before it, so the decode state is the KV cache and, besides it, the last
cca_conv + cca_group_conv - 2 inputs of the convolutions and the previous token's input (constant in the context).
Padding tokens' inputs are zeroed before everything, as transformers does. Shapes: B batch, T length."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LlmarchError
from .attention import Attention, attention_setup, split_heads
from .attention_kinds import ATTENTION_KINDS
from .hooks import HookPoint
from .linear import Linear
from .mixer import MIXERS, Mixer
from .parallel_mixer import PartStates
from .positions import apply_rotary
from .ssm import MixerState, masked, token_mask


@MIXERS.register("cca")
class CCAttention(Attention):
    """Attention's protocol (its kind's KV cache, notes, score widths) with CCA's projections (module docstring)."""

    @classmethod
    def check(cls, cfg) -> None:
        if cfg.attention not in ("full", "sliding_window"):
            raise LlmarchError(f"mixer='cca' attends with a KV cache: attention 'full' or 'sliding_window', not "
                               f"{cfg.attention!r}")
        if cfg.qk_norm != "none" or cfg.attn_output_gate or cfg.attn_head_gate or cfg.attn_sinks \
                or cfg.kv_shared_layers or cfg.attn_k_eq_v:
            raise LlmarchError("mixer='cca' has its own QK-norm and no output gates, sinks or shared keys and values "
                               "(qk_norm='none', attn_output_gate, attn_head_gate, attn_sinks, kv_shared_layers, "
                               "attn_k_eq_v off)")
        if cfg.cca_conv < 1 or cfg.cca_group_conv < 1 or (cfg.n_kv_heads * cfg.head_dim) % 2:
            raise LlmarchError(f"mixer='cca' needs cca_conv and cca_group_conv >= 1 and an even n_kv_heads * head_dim, "
                               f"got {cfg.cca_conv}, {cfg.cca_group_conv} and {cfg.n_kv_heads * cfg.head_dim}")

    def __init__(self, cfg, layer: int = 0):
        Mixer.__init__(self)
        attention_setup(self, cfg)
        self.kind = ATTENTION_KINDS[cfg.attention](cfg, layer)
        H, K, D, d = self.n_heads, self.n_kv_heads, self.head_dim, cfg.d_model
        self.kv_heads, self.sinks, self.kv_shared = K, None, False
        self.q_proj, self.k_proj = Linear(d, H * D, bias=cfg.qkv_bias), Linear(d, K * D, bias=cfg.qkv_bias)
        self.v_proj_current = Linear(d, K * D // 2, bias=cfg.qkv_bias)
        self.v_proj_delayed = Linear(d, K * D // 2, bias=cfg.qkv_bias)
        C = (H + K) * D
        self.conv_qk_depthwise = nn.Conv1d(C, C, cfg.cca_conv, groups=C)
        self.conv_qk_grouped = nn.Conv1d(C, C, cfg.cca_group_conv, groups=H + K)
        self.history = cfg.cca_conv + cfg.cca_group_conv - 2  # inputs before t that q~_t and k~_t read
        self.temp = nn.Parameter(torch.ones(K))  # tau: the keys' learned scale per key head
        self.o_proj = Linear(H * D, d, bias=cfg.o_bias)
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()
        self.hook_pattern, self.hook_z = HookPoint(), HookPoint()

    # the decode state: the kind's KV cache, which the kind reads as this module's `cache` submodule, and the
    # convolution's last inputs with the previous token's input (a MixerState)
    @property
    def cache(self) -> PartStates | None:
        return self.__dict__.get("_states")

    @cache.setter
    def cache(self, states: PartStates | None) -> None:
        self.__dict__["_states"] = states
        self._modules.pop("cache", None)
        if states is not None:
            self._modules["cache"] = states.parts[0]

    def __setattr__(self, name: str, value) -> None:
        if name == "cache":  # the property above, not nn.Module's bookkeeping of a submodule named cache
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def _recurrent(self, batch: int, dtype, device) -> MixerState:
        C = self.conv_qk_depthwise.in_channels
        return MixerState(conv=torch.zeros(batch, C, self.history, dtype=dtype, device=device),
                          prev=torch.zeros(batch, self.q_proj.in_features, dtype=dtype, device=device))

    def new_state(self, batch: int, max_len: int, dtype: torch.dtype, device) -> PartStates:
        return PartStates([self.kind.new_state(self, batch, max_len, dtype, device),
                           self._recurrent(batch, dtype, device)])

    def bounded_state(self, batch: int, max_len: int, dtype: torch.dtype, device) -> PartStates:
        return PartStates([self.kind.bounded_state(self, batch, max_len, dtype, device),
                           self._recurrent(batch, dtype, device)])

    def cache_bytes(self, dtype: torch.dtype, max_len: int) -> tuple[int, int]:
        per_token, _ = self.kind.cache_bytes(self, dtype, max_len)
        return per_token, self._recurrent(2, dtype, "meta").nbytes // 2

    def _convolved(self, qk: torch.Tensor, state: MixerState | None) -> torch.Tensor:
        """conv_g(conv_d(qk)) (B, T, C), causal, continuing from the state's last inputs (zeros at the start)."""
        xt, P = qk.transpose(1, 2), self.history  # (B, C, T)
        if state is None:
            xt = F.pad(xt, (P, 0))
        elif P:
            xt = torch.cat([state["conv"].to(xt.dtype), xt], dim=-1)
            state["conv"].copy_(xt[..., -P:])
        h = F.conv1d(xt, self.conv_qk_depthwise.weight, self.conv_qk_depthwise.bias, groups=xt.shape[1])
        g = self.conv_qk_grouped
        return F.conv1d(h, g.weight, g.bias, groups=g.in_channels // g.weight.shape[1]).transpose(1, 2)

    def forward(self, x: torch.Tensor, ctx) -> torch.Tensor:
        B, T, _ = x.shape
        H, K, D = self.n_heads, self.n_kv_heads, self.head_dim
        x = masked(x, token_mask(ctx, x))
        state = None if self.cache is None else self.cache.parts[1]
        q, k = self.q_proj(x), self.k_proj(x)
        r = (q.view(B, T, H, D) + k.view(B, T, K, 1, D).expand(B, T, K, H // K, D).reshape(B, T, H, D)) / 2
        qk = self._convolved(torch.cat([q, k], dim=-1), state)
        q = qk[..., : H * D].view(B, T, H, D) + r
        k = qk[..., H * D:].view(B, T, K, D) + r.view(B, T, K, H // K, D).mean(dim=-2)
        before = x.new_zeros(B, 1, x.shape[-1]) if state is None else state["prev"][:, None].to(x.dtype, copy=True)
        if state is not None:
            state["prev"].copy_(x[:, -1])
        v = torch.cat([self.v_proj_current(x), self.v_proj_delayed(torch.cat([before, x[:, :-1]], dim=1))], dim=-1)
        q = q * (D ** 0.5 / q.norm(dim=-1, keepdim=True).clamp(min=torch.finfo(q.dtype).eps))
        k = k * (D ** 0.5 / k.norm(dim=-1, keepdim=True).clamp(min=torch.finfo(k.dtype).eps)) * self.temp[:, None]
        q = self.hook_q(q).transpose(1, 2)  # (B, H, T, D)
        k = self.hook_k(k).transpose(1, 2)  # (B, K, T, D)
        v = split_heads(self.hook_v(v.view(B, T, K, D)).flatten(2), K, D)  # (B, K, T, D)
        if ctx.rope is not None:
            q, k = apply_rotary(q, *ctx.rope), apply_rotary(k, *ctx.rope)
        dropout_p = self.dropout if self.training else 0.0
        y = self.kind.attend(self, x, q, k, v, ctx, dropout_p).transpose(1, 2)  # (B, T, H, D)
        return self.o_proj(self.hook_z(y).reshape(B, T, H * D))
