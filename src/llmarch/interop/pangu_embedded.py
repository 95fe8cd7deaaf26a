"""Huawei's openPangu-Embedded 1B and 7B (`model_type: PanguEmbedded`, remote code PanguEmbeddedForCausalLM): LLaMA's
layout and computation (RMSNorm, SwiGLU, RoPE on halves, grouped-query attention) with one config.json switch, `bias`,
that puts biases on q, k, v and o_proj while the MLP has none (its gate_proj, up_proj, down_proj are built without):
qkv_bias and o_bias True beside bias False, which LLaMA's attention_bias / mlp_bias cannot say (they tie o_proj's
bias to the MLP's). RoPE as the remote config holds it, `rope_theta` alone; its scaling is refused."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .expressible import refuse_unless_read_back
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES, causal_only, llama_like_config, llama_like_hf

MODEL_TYPE = "PanguEmbedded"


def to_config(hf: dict) -> ModelConfig:
    scaling = hf.get("rope_scaling") or {}
    if scaling.get("rope_type", scaling.get("type", "default")) != "default":
        raise LlmarchError(f"{MODEL_TYPE}: rope_scaling {scaling!r} is not supported (the remote code has none)")
    bias = bool(hf.get("bias", True))  # the remote config's default
    plain = {k: v for k, v in hf.items() if k not in ("bias", "rope_scaling", "attention_bias", "mlp_bias")}
    return llama_like_config({**plain, "model_type": MODEL_TYPE}, bias=False, qkv_bias=bias, o_bias=bias)


def from_config(cfg: ModelConfig) -> dict:
    causal_only(cfg)
    hf = llama_like_hf(cfg, architectures=["PanguEmbeddedForCausalLM"], bias=cfg.qkv_bias, rope_theta=cfg.rope_theta)
    for key in ("attention_bias", "mlp_bias", "rope_parameters"):
        del hf[key]
    return refuse_unless_read_back(cfg, hf, to_config)


FAMILIES.register(MODEL_TYPE)(Family(RULES, to_config, from_config, IGNORE))
