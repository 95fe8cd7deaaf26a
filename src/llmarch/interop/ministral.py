"""Ministral (`model_type: ministral`; Mistral AI 2024, Ministral-8B-Instruct-2410): Mistral's layout whose layers
`layer_types` names each sliding (over sliding_window keys) or full: Ministral 8B interleaves them."""
from __future__ import annotations

from ..config import ModelConfig
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES, llama_like_config, llama_like_hf
from .qwen3 import window_fields, window_hf


def to_config(hf: dict) -> ModelConfig:
    # layer_types names the windows (no use_sliding_window switch, unlike Qwen's)
    return llama_like_config(hf, **window_fields({**hf, "use_sliding_window": True}))


def from_config(cfg: ModelConfig) -> dict:
    window = window_hf(cfg)
    for key in ("use_sliding_window", "max_window_layers"):
        window.pop(key, None)
    out = llama_like_hf(cfg, architectures=["MinistralForCausalLM"], **window)
    for key in ("attention_bias", "mlp_bias"):
        out.pop(key)
    return out


FAMILIES.register("ministral")(Family(RULES, to_config, from_config, IGNORE))
