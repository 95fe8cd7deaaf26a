"""InternLM3 (`model_type: internlm3`; Shanghai AI Laboratory 2025, InternLM3-8B-Instruct): LLaMA exactly
(transformers runs it as LlamaForCausalLM), with its own config names: `qkv_bias` for attention_bias and `bias` for
mlp_bias (which must agree, as LLaMA's o_proj takes the attention's bias), and head_dim 128 by default."""
from __future__ import annotations

from ..config import ModelConfig
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES, llama_like_config, llama_like_hf

HEAD_DIM = 128  # InternLM3Config's default


def to_config(hf: dict) -> ModelConfig:
    hf = {"head_dim": HEAD_DIM, "rms_norm_eps": 1e-5, **hf,
          "attention_bias": hf.get("attention_bias", hf.get("qkv_bias", False)),
          "mlp_bias": hf.get("mlp_bias", hf.get("bias", False))}
    return llama_like_config(hf)


def from_config(cfg: ModelConfig) -> dict:
    return llama_like_hf(cfg, architectures=["LlamaForCausalLM"])


FAMILIES.register("internlm3")(Family(RULES, to_config, from_config, IGNORE))
