"""CWM (`model_type: cwm`; Meta FAIR 2025, "CWM: An Open-Weights LLM for Research on Code Generation with World
Models"): LLaMA's layout whose layers `layer_types` names each sliding (over sliding_window keys) or full, as
Ministral's (ministral.py); by default every 4th layer (i % 4 == 0) full. Its config's defaults: RoPE base 1e6 with
LLaMA 3 scaling (factor 16 over 8192 positions), no biases (CwmConfig has no attention_bias)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES, llama_like_config, llama_like_hf
from .qwen3 import FULL, SLIDING, window_fields, window_hf

ROPE = {"rope_type": "llama3", "rope_theta": 1_000_000.0, "factor": 16.0, "high_freq_factor": 4.0,
        "low_freq_factor": 1.0, "original_max_position_embeddings": 8192}  # CwmConfig's default rope_parameters


def to_config(hf: dict) -> ModelConfig:
    if hf.get("mlp_bias"):
        raise LlmarchError("cwm: mlp_bias=true is not supported (its attention has no biases)")
    n, window = hf["num_hidden_layers"], hf.get("sliding_window", 8192)
    types = hf.get("layer_types") or [FULL if i % 4 == 0 else SLIDING for i in range(n)]
    rope = {} if hf.get("rope_parameters") or hf.get("rope_scaling") or hf.get("rope_theta") else \
        {"rope_parameters": ROPE}
    hf = {**hf, **rope, "attention_bias": False, "mlp_bias": False, "layer_types": types, "sliding_window": window}
    return llama_like_config({"rms_norm_eps": 1e-5, "head_dim": 128, **hf},
                             **window_fields({**hf, "use_sliding_window": window is not None}))


def from_config(cfg: ModelConfig) -> dict:
    if cfg.bias or cfg.qkv_bias:
        raise LlmarchError("model_type cwm has no biases")
    window = window_hf(cfg)
    for key in ("use_sliding_window", "max_window_layers"):
        window.pop(key, None)
    out = llama_like_hf(cfg, architectures=["CwmForCausalLM"], **window)
    out.pop("attention_bias")
    return out


FAMILIES.register("cwm")(Family(RULES, to_config, from_config, IGNORE))
