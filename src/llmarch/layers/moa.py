"""Mixture of attention heads (MoA; Zhang et al. 2022, "Mixture of Attention Heads: Selecting Attention Heads Per
Token", §3; JetMoE, Shen et al. 2024, "JetMoE: Reaching Llama2 Performance with 0.1M Dollars", §2.2): a router
picks k of E attention experts per token (router.py: top-k of the logits, softmax over the k chosen); expert e
holds a query projection W_q^e (K·D rows) and an output projection W_o^e (back to d_model). Keys and values are
one projection all experts share, K heads of D dims, so the KV cache is that of K heads. A token's k chosen
experts give k groups of K query heads, H = k·K; query head j of group g attends with key/value head g, and

    y = sum_j w_j · Attn(x W_q^{e_j}, K, V) W_o^{e_j} + b        (Zhang et al. 2022, eq. 4-6)

Its heads are GQA's, ordered here so that query head g·k + j is choice j's head g (the k heads sharing a
key/value head adjacent, as attention's repeat_interleave pairs them). Mixer "moa": n_heads = experts_per_token ·
n_kv_heads; n_experts and experts_per_token are the mixture's (JetMoE uses one count for its MoA and its MoE FFN);
o_bias adds b. Its routing is in the training's router losses beside the FFN's (models/routing.py), as JetMoE's.
Shapes: B batch, T tokens, N = B·T, k choices, K key/value heads, D head dim, C d_model."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LlmarchError
from .attention import Attention, AttentionContext, attention_setup
from .attention_kinds import ATTENTION_KINDS
from .hooks import HookPoint
from .linear import Linear
from .mixer import MIXERS, Mixer
from .router import Router


@MIXERS.register("moa")
class MoA(Attention):
    residual_out = ("o_experts",)

    def __init__(self, cfg, layer: int = 0):
        Mixer.__init__(self)
        attention_setup(self, cfg)
        self.kind = ATTENTION_KINDS[cfg.attention](cfg, layer)
        self.k, E, K, D = cfg.experts_per_token, cfg.n_experts, cfg.n_kv_heads, cfg.head_dim
        # what Attention's own paths read, all off: MoA has no QK-norm, output gate, shared KV or sinks
        self.gated = self.kv_shared = self.k_eq_v = False
        self.kv_from, self.kv_heads, self.qk_norm, self.clip = layer, K, "none", None
        self.v_eps = self.temperature = self.key_scale = self.value_scale = self.sinks = self.sub_norm = None
        self.router = Router(cfg)
        self.q_experts = nn.Parameter(torch.empty(E, K * D, cfg.d_model))  # (E, K·D, C)
        self.o_experts = nn.Parameter(torch.empty(E, cfg.d_model, K * D))  # (E, C, K·D)
        self.o_bias = nn.Parameter(torch.empty(cfg.d_model)) if cfg.o_bias else None
        self.kv_proj = Linear(cfg.d_model, 2 * K * D, bias=cfg.qkv_bias)  # rows: K·D of keys, then of values
        self.routing = None  # the Routing of the last forward (router.py)
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()
        self.hook_pattern, self.hook_z = HookPoint(), HookPoint()

    @classmethod
    def check(cls, cfg) -> None:
        if cfg.n_experts < 1 or cfg.n_heads != cfg.experts_per_token * cfg.n_kv_heads:
            raise LlmarchError(f"mixer 'moa' needs n_experts > 0 and n_heads = experts_per_token x n_kv_heads, got "
                               f"{cfg.n_experts}, {cfg.n_heads} and {cfg.experts_per_token} x {cfg.n_kv_heads}")
        if cfg.attention not in ("full", "sliding_window") or cfg.qk_norm != "none" or cfg.attn_output_gate \
                or cfg.attn_sinks or cfg.attn_k_eq_v or cfg.v_norm or cfg.kv_shared_layers or cfg.clip_qkv \
                or cfg.attn_temp_scale or cfg.attn_key_multiplier != 1.0 or cfg.attn_value_multiplier != 1.0 \
                or cfg.value_width != cfg.head_dim:
            raise LlmarchError("mixer 'moa' attends as plain full or sliding-window attention: no QK-norm, output "
                               "gate, sinks, k_eq_v, v_norm, kv_shared_layers, clip_qkv, temperature, key or value "
                               "multiplier, or value_dim other than head_dim")

    def forward(self, x: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        B, T, C = x.shape
        K, D, k = self.n_kv_heads, self.head_dim, self.k
        weights, self.routing = self.router(x)  # (B, T, k) each
        chosen = self.routing.experts.reshape(B * T, k)
        slots = [(chosen == e).nonzero(as_tuple=True) for e in range(self.q_experts.shape[0])]  # (token, choice)
        xs = x.reshape(B * T, C)
        q = x.new_zeros(B * T, k, K * D)
        for e, (n, j) in enumerate(slots):
            if n.numel():
                q[n, j] = F.linear(xs[n], self.q_experts[e])
        q = q.view(B, T, k, K, D).transpose(2, 3).reshape(B, T, K * k, D)  # head g·k + j: choice j's head g
        keys, values = self._modules["kv_proj"](x).view(B, T, 2 * K, D).chunk(2, dim=2)  # (B, T, K, D) each
        q, keys, values = self._own_kv(q, keys, values, 2, False, ctx)
        y = self.kind.attend(self, x, q, keys, values, ctx, self.dropout if self.training else 0.0)  # (B, H, T, D)
        y = self._modules["hook_z"](y.transpose(1, 2))  # (B, T, H, D)
        y = y.reshape(B * T, K, k, D).transpose(1, 2).reshape(B * T, k, K * D)  # choice j's K heads
        w = weights.reshape(B * T, k).to(x.dtype)
        out = x.new_zeros(B * T, C)
        for e, (n, j) in enumerate(slots):
            if n.numel():
                out.index_add_(0, n, F.linear(y[n, j], self.o_experts[e]) * w[n, j, None])
        out = out.view(B, T, C)
        return out if self.o_bias is None else out + self.o_bias
