"""Qwen2 (`model_type: qwen2`): LLaMA's layout with biases on the q, k, v projections only (none on the
output projection or the MLP). Its optional sliding window applies per layer; llmarch supports it only when
every layer uses it."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES, causal_only, llama_like_config, llama_like_hf


def to_config(hf: dict) -> ModelConfig:
    window = None
    if hf.get("use_sliding_window"):
        kinds = set(hf.get("layer_types") or ["sliding_attention"])
        if kinds != {"sliding_attention"}:
            raise LlmarchError("Qwen2 with sliding windows on some layers only is not supported")
        window = hf.get("sliding_window")
    return llama_like_config({**hf, "attention_bias": False, "mlp_bias": False}, qkv_bias=True, sliding_window=window)


def from_config(cfg: ModelConfig) -> dict:
    causal_only(cfg)
    out = llama_like_hf(cfg, architectures=["Qwen2ForCausalLM"], use_sliding_window=cfg.sliding_window is not None,
                        sliding_window=cfg.sliding_window)
    for key in ("attention_bias", "mlp_bias", "head_dim"):
        out.pop(key)
    return out


FAMILIES.register("qwen2")(Family(RULES, to_config, from_config, IGNORE))
