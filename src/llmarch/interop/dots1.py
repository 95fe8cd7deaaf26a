"""dots.llm1 (`model_type: dots1`; rednote-hilab 2025, "dots.llm1 Technical Report"): Qwen3's attention (per-head
QK-norm, sliding layers by layer_types) with DeepSeek-V3's mixture after first_k_dense_replace dense layers: sigmoid
scores, an expert bias for the choice, n_group groups of which topk_group are chosen, the chosen scores
renormalised only where norm_topk_prob (dots.llm1: yes; the config class defaults to no) and times
routed_scaling_factor, plus shared experts. The same tensors as GLM-4.5's, without its attention biases."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .deepseek_v2 import moe_fields, moe_hf, v3_router_fields
from .glm4_moe import RULES, check_v3_mixture
from .hf import FAMILIES, Family
from .llama import IGNORE, llama_like_config, llama_like_hf
from .mixtral import STACKED
from .qwen3 import window_fields, window_hf


def to_config(hf: dict) -> ModelConfig:
    if hf.get("attention_bias"):
        raise LlmarchError("dots1: attention_bias=true is not supported")
    router = {**v3_router_fields(hf), "router_renormalize": bool(hf.get("norm_topk_prob", False))}
    # the windows are the config's layer_types (no use_sliding_window switch, unlike Qwen3's)
    return llama_like_config({**hf, "mlp_bias": False}, qk_norm="head", norm_eps=hf.get("rms_norm_eps", 1e-6),
                             **window_fields({**hf, "use_sliding_window": True}), **moe_fields(hf, 0), **router)


def from_config(cfg: ModelConfig) -> dict:
    check_v3_mixture(cfg)
    if cfg.qk_norm != "head" or cfg.qkv_bias:
        raise LlmarchError("model_type dots1 needs a per-head QK-norm (qk_norm='head') and no q, k, v biases")
    window = window_hf(cfg)
    window.pop("use_sliding_window")
    out = llama_like_hf(cfg, architectures=["Dots1ForCausalLM"], norm_topk_prob=cfg.router_renormalize,
                        **window, **moe_hf(cfg))
    for key in ("attention_bias", "mlp_bias"):
        out.pop(key)
    return out


FAMILIES.register("dots1")(Family(RULES, to_config, from_config, IGNORE, stacked_experts=STACKED))
