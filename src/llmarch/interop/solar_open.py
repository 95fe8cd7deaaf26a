"""Solar Open (`model_type: solar_open`; Upstage 2025, Solar-Open-100B): LLaMA's attention over whole heads (full
rotary; q, k, v biases with attention_bias, none on o) with GLM-4.5's mixture (glm4_moe.py: DeepSeek-V3's sigmoid
router with an expert bias, groups, renormalised and scaled scores, shared experts) on every layer: no dense first
layers, no QK-norm, no multi-token-prediction layer."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .deepseek_v2 import moe_fields, moe_hf, moe_rules, v3_router_fields
from .glm4_moe import check_v3_mixture
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf, rope_fraction, rope_parameters
from .mixtral import STACKED

RULES = [r for r in LLAMA_RULES if ".mlp." not in r.ours] + moe_rules()
THETA = 1_000_000.0  # SolarOpenConfig.default_theta
# SolarOpenConfig's defaults for what a config.json may leave out
DEFAULTS = dict(rope_theta=THETA, head_dim=128, rms_norm_eps=1e-5, moe_intermediate_size=1280, n_routed_experts=128,
                num_experts_per_tok=8, n_shared_experts=1, routed_scaling_factor=1.0, n_group=1, topk_group=1,
                norm_topk_prob=True)


def to_config(hf: dict) -> ModelConfig:
    hf = {**DEFAULTS, **hf}
    hf = {**hf, "intermediate_size": hf["moe_intermediate_size"], "first_k_dense_replace": 0, "mlp_bias": False}
    return llama_like_config({**hf, "attention_bias": False}, qkv_bias=bool(hf.get("attention_bias", False)),
                             rope_fraction=rope_fraction(hf, 1.0), **moe_fields(hf, 0), **v3_router_fields(hf))


def from_config(cfg: ModelConfig) -> dict:
    check_v3_mixture(cfg)
    if cfg.moe_dense_first or cfg.qk_norm != "none" or cfg.sliding_window is not None or cfg.layer_types is not None:
        raise LlmarchError("model_type solar_open has a mixture on every layer, no QK-norm, windows or layer types")
    out = llama_like_hf(cfg, architectures=["SolarOpenForCausalLM"], rope_parameters=rope_parameters(cfg, partial=True),
                        norm_topk_prob=cfg.router_renormalize, **moe_hf(cfg))
    for key in ("mlp_bias", "intermediate_size", "first_k_dense_replace"):
        out.pop(key)
    return out


FAMILIES.register("solar_open")(Family(RULES, to_config, from_config, IGNORE, stacked_experts=STACKED))
