"""Seed-OSS (`model_type: seed_oss`: ByteDance Seed-OSS-36B, 2025): LLaMA's layout with biases on q, k and v
(attention_bias) but not on o (attention_out_bias) or the MLP (mlp_bias), as Qwen2's; an explicit head_dim. Its
attention and residual dropouts are training terms, not read."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES, llama_like_config, llama_like_hf


def to_config(hf: dict) -> ModelConfig:
    if hf.get("attention_out_bias", False) != hf.get("mlp_bias", False):  # ours: o's bias is the MLP's
        raise LlmarchError("seed_oss: attention_out_bias differing from mlp_bias is not supported")
    return llama_like_config({**hf, "attention_bias": hf.get("mlp_bias", False)},
                             qkv_bias=bool(hf.get("attention_bias", True)))


def from_config(cfg: ModelConfig) -> dict:
    if cfg.norm != "rmsnorm" or cfg.norm_placement != "pre" or cfg.qk_norm != "none" or cfg.ffn != "swiglu" \
            or cfg.sliding_window is not None or cfg.layer_types is not None:
        raise LlmarchError("model_type seed_oss needs pre-norm RMSNorm, SwiGLU and no QK-norm, windows or layer "
                           "types")
    return llama_like_hf(cfg, architectures=["SeedOssForCausalLM"], attention_bias=cfg.qkv_bias,
                         attention_out_bias=cfg.bias, mlp_bias=cfg.bias, attention_dropout=0.0, residual_dropout=0.0)


FAMILIES.register("seed_oss")(Family(RULES, to_config, from_config, IGNORE))
