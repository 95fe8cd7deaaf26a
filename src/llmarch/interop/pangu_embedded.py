"""Huawei's openPangu-Embedded (`model_type: PanguEmbedded`, remote code PanguEmbeddedForCausalLM: openPangu-Embedded
1B and 7B): LLaMA exactly, but with a bias on q, k, v and o (`bias`, true in the released models) and none on the
MLP; RoPE on halves, grouped-query attention, a head of its own unless tie_word_embeddings."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .expressible import refuse_unless_read_back
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES, llama_like_config, llama_like_hf


def to_config(hf: dict) -> ModelConfig:
    if hf.get("hidden_act", "silu") != "silu":
        raise LlmarchError(f"PanguEmbedded: hidden_act {hf['hidden_act']!r} is not supported (silu only)")
    bias = bool(hf.get("bias", True))  # the remote config's default
    return llama_like_config({**hf, "attention_bias": False, "mlp_bias": False}, qkv_bias=bias, o_bias=bias)


def from_config(cfg: ModelConfig) -> dict:
    hf = llama_like_hf(cfg, architectures=["PanguEmbeddedForCausalLM"], bias=bool(cfg.qkv_bias))
    for unread in ("attention_bias", "mlp_bias"):  # the remote model reads `bias` alone
        del hf[unread]
    return refuse_unless_read_back(cfg, hf, to_config)


FAMILIES.register("PanguEmbedded")(Family(RULES, to_config, from_config, IGNORE))
