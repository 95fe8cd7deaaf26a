"""DeepSeek-V4's attention (DeepSeek-AI 2026, DeepSeek-V4 report §2.3; transformers' DeepseekV4Attention), a
sequence mixer (mixer.py): multi-query attention whose one key/value head is both the key and the value.

    c^Q = RMSNorm(x W^DQ)                          the compressed query (q_lora_rank), with a gain
    q_h = rms(c^Q W^UQ_h)                          each head's query over its RMS, without a gain (DeepSeek-V4's q norm)
    kv  = RMSNorm(x W^KV)                          one head of head_dim, with a gain: the key and the value
    q, kv rotated (partial RoPE: rope_fraction of each head's dims)
    o_h = softmax(q_h kv^T / sqrt(D), sinks) kv    the attention kind's (sliding_window, full), with attn_sinks
    o_h rotated back by its query's position       (kv's rotation rides on the values: RoPE at -t on the output
                                                    leaves each value's contribution a function of t - s)
    y   = [o_g W^Oa_g]_g W^Ob                      grouped output projection: the heads in o_groups groups, each
                                                    projected to o_lora_rank dims by its own matrix, then mixed
The query, key and rotation sit on the attention kind's machinery (masks, caches, sinks), as attention's do: the
cache holds the one head's keys and values (the same numbers, stored twice). DeepSeek-V4's compressed layers (CSA,
HCA: compressors and a lightning indexer over compressed entries) are not implemented (interop refuses them).
Shapes: B batch, T queries, H heads, D head_dim, G o_groups, R o_lora_rank."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import LlmarchError
from .attention import Attention, AttentionContext, attention_setup
from .attention_kinds import ATTENTION_KINDS
from .hooks import HookPoint
from .linear import Linear
from .mixer import MIXERS, Mixer
from .norms import RMSNorm, rms_normalize
from .positions import apply_rotary


class GroupedLinear(nn.Module):
    """G independent projections of G input groups: (..., G, I) -> (..., G, R), weight (G * R, I) as transformers'
    DeepseekV4GroupedLinear stores it (group g's rows g*R .. (g+1)*R - 1)."""

    def __init__(self, in_per_group: int, out: int, groups: int):
        super().__init__()
        self.groups = groups
        self.weight = nn.Parameter(torch.empty(out, in_per_group))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.view(self.groups, -1, self.weight.shape[-1])  # (G, R, I)
        return torch.einsum("...gi,gri->...gr", x, w)


@MIXERS.register("shared_kv")
class SharedKVAttention(Attention):
    attr = "attn"
    residual_out = ("o_b_proj.weight",)

    def __init__(self, cfg, layer: int = 0):
        Mixer.__init__(self)
        attention_setup(self, cfg)
        H, D, C = cfg.n_heads, cfg.head_dim, cfg.d_model
        self.kind = ATTENTION_KINDS[cfg.attention](cfg, layer)
        self.kv_heads, self.kv_shared = 1, False
        self.eps = cfg.norm_eps
        self.q_a_proj = Linear(C, cfg.q_lora_rank, bias=False)
        self.q_a_norm = RMSNorm(cfg.q_lora_rank, cfg.norm_eps)
        self.q_b_proj = Linear(cfg.q_lora_rank, H * D, bias=False)
        self.kv_proj = Linear(C, D, bias=False)
        self.kv_norm = RMSNorm(D, cfg.norm_eps)
        G = cfg.o_groups
        self.o_rank = cfg.o_lora_rank or C // G
        self.o_a_proj = GroupedLinear(H * D // G, G * self.o_rank, G)
        self.o_b_proj = Linear(G * self.o_rank, C, bias=False)
        self.sinks = nn.Parameter(torch.zeros(H)) if cfg.attn_sinks else None
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()
        self.hook_pattern, self.hook_z = HookPoint(), HookPoint()

    @classmethod
    def check(cls, cfg) -> None:
        if cfg.attention not in ("full", "sliding_window"):
            raise LlmarchError(f"mixer='shared_kv' and attention={cfg.attention!r}: it takes full or sliding_window")
        if cfg.n_kv_heads != 1 or cfg.q_lora_rank is None or cfg.q_lora_rank <= 0:
            raise LlmarchError(f"mixer='shared_kv' needs n_kv_heads=1 and a positive q_lora_rank, got "
                               f"{cfg.n_kv_heads} and {cfg.q_lora_rank}")
        if cfg.qk_norm != "none" or cfg.attn_output_gate or cfg.qkv_bias or cfg.o_bias or cfg.sub_norm \
                or cfg.attn_k_eq_v or cfg.v_norm or cfg.kv_shared_layers or cfg.clip_qkv is not None \
                or cfg.attn_temp_scale or cfg.attn_key_multiplier != 1.0:
            raise LlmarchError("mixer='shared_kv' has its own query and key norms and no biases, output gate, "
                               "sub_norm, k_eq_v, v_norm, KV sharing, clip_qkv, temperature or key multiplier")
        if cfg.o_groups < 1 or cfg.n_heads % cfg.o_groups or (cfg.o_lora_rank is not None and cfg.o_lora_rank < 1):
            raise LlmarchError(f"o_groups={cfg.o_groups} must divide n_heads={cfg.n_heads}, and o_lora_rank be "
                               f"positive, got {cfg.o_lora_rank}")

    @classmethod
    def score_dims(cls, cfg) -> int:
        return 2 * cfg.n_heads * cfg.head_dim

    def forward(self, x: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        B, T, _ = x.shape
        sub = self._modules
        H, D = self.n_heads, self.head_dim
        q = sub["q_b_proj"](sub["q_a_norm"](sub["q_a_proj"](x))).view(B, T, H, D)
        q = sub["hook_q"](rms_normalize(q, self.eps)).transpose(1, 2)  # (B, H, T, D)
        kv = sub["hook_k"](sub["kv_norm"](sub["kv_proj"](x)).view(B, T, 1, D)).transpose(1, 2)  # (B, 1, T, D)
        if ctx.rope is not None:
            q, kv = apply_rotary(q, *ctx.rope), apply_rotary(kv, *ctx.rope)
        y = self.kind.attend(self, x, q, kv, kv, ctx, self.dropout if self.training else 0.0)  # (B, H, T, D)
        if ctx.rope is not None:  # the values' rotation undone at the query's position
            cos, sin = ctx.rope
            y = apply_rotary(y, cos, -sin)
        y = sub["hook_z"](y.transpose(1, 2))  # (B, T, H, D)
        y = sub["o_a_proj"](y.reshape(B, T, self.o_a_proj.groups, -1))  # (B, T, G, R)
        return sub["o_b_proj"](y.flatten(2))
