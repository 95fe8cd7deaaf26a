"""EXAONE 4.0 (`model_type: exaone4`; LG AI Research 2025, "EXAONE 4.0: Unified Large Language Models Integrating
Non-reasoning and Reasoning Modes", §2.1): OLMo 2's placement of the norms (RMSNorm on each sublayer's output
before the residual add, none on its input: norm_placement 'res_post') with Qwen3's QK-norm per head before RoPE
(qk_norm 'head'). With a sliding window, the layers `layer_types` names sliding attend over the window with RoPE
and the full layers attend to everything without positions (NoPE); without one, every layer is full attention
with RoPE (EXAONE-4.0-1.2B)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, llama_like_config, llama_like_hf
from .olmo2 import RULES as OLMO2_RULES
from .qwen3 import nope_window_fields, nope_window_hf

def to_config(hf: dict) -> ModelConfig:
    return llama_like_config(hf, qk_norm="head", norm_placement="res_post", norm_eps=hf.get("rms_norm_eps", 1e-5),
                             **nope_window_fields(hf))


def from_config(cfg: ModelConfig) -> dict:
    if cfg.qk_norm != "head" or cfg.norm_placement != "res_post" or not cfg.final_norm or cfg.norm != "rmsnorm":
        raise LlmarchError("model_type exaone4 needs qk_norm='head', norm_placement='res_post' and RMSNorm")
    if cfg.bias or cfg.qkv_bias or cfg.positions != "rope" or cfg.sliding_window is not None:
        raise LlmarchError("model_type exaone4 has no biases, and RoPE with windows only per layer type")
    out = llama_like_hf(cfg, architectures=["Exaone4ForCausalLM"], **nope_window_hf(cfg))
    for key in ("mlp_bias", "attention_bias"):
        out.pop(key)
    return out


FAMILIES.register("exaone4")(Family(OLMO2_RULES, to_config, from_config, IGNORE))
