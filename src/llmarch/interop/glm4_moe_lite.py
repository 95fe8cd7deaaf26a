"""GLM-4.7-Flash (`model_type: glm4_moe_lite`; Zhipu AI 2026): DeepSeek-V3's layout (deepseek_v3.py) under GLM's
name: multi-head latent attention with RoPE dims interleaved, and after the dense layers that mlp_layer_types names
first (in place of first_k_dense_replace), V3's mixture (sigmoid scores, an expert bias for the choice, groups, the
chosen scores renormalised and times routed_scaling_factor, shared experts). Multi-token-prediction layers past
the last are not loaded."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .deepseek_v2 import IGNORE, deepseek_config, deepseek_hf, dense_first, first_dense, rules, v3_router_fields
from .hf import FAMILIES, Family


def to_config(hf: dict) -> ModelConfig:
    if hf.get("rope_interleave") is False:
        raise LlmarchError("glm4_moe_lite with rope_interleave false is not supported")
    # without mlp_layer_types: one dense layer first (the config class's default)
    return deepseek_config({**hf, "first_k_dense_replace": dense_first(hf)}, **v3_router_fields(hf))


def from_config(cfg: ModelConfig) -> dict:
    if cfg.n_experts and (cfg.router_scoring != "sigmoid" or not cfg.expert_bias):
        raise LlmarchError("model_type glm4_moe_lite routes by sigmoid scores with an expert bias "
                           "(router_scoring 'sigmoid', expert_bias True)")
    k = first_dense(cfg)
    out = deepseek_hf(cfg, architectures=["Glm4MoeLiteForCausalLM"], norm_topk_prob=cfg.router_renormalize,
                      rope_interleave=True, mlp_layer_types=["dense"] * k + ["sparse"] * (cfg.n_layers - k))
    out.pop("first_k_dense_replace")
    return out


FAMILIES.register("glm4_moe_lite")(Family(rules(interleaved=True), to_config, from_config, IGNORE, mtp=True))
