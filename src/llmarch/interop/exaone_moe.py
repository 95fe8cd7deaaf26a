"""EXAONE MoE (`model_type: exaone_moe`; LG AI Research, K-EXAONE 2026): EXAONE 4.0's attention (per-head QK-norm;
with a window, sliding layers with RoPE and full layers without positions: exaone4.py) in OLMoE's pre-norm blocks,
whose FFNs after the dense layers mlp_layer_types names (else first_k_dense_replace) are DeepSeek-V3's mixture:
sigmoid scores, an expert bias for the choice, groups, the chosen scores renormalised (norm_topk_prob) and times
routed_scaling_factor, plus num_shared_experts shared experts fused."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .deepseek_v2 import dense_first, first_dense, moe_fields, moe_hf, moe_rules, v3_router_fields
from .glm4_moe import check_v3_mixture
from .hf import FAMILIES, Family
from .llama import IGNORE, llama_like_config, llama_like_hf
from .mixtral import STACKED
from .qwen3 import RULES as QWEN3_RULES, nope_window_fields, nope_window_hf

# published files hold the expert bias beside the router (transformers 5 renames it under mlp.gate on reading)
RULES = QWEN3_RULES + moe_rules("e_score_correction_bias")


def to_config(hf: dict) -> ModelConfig:
    moe = {**hf, "n_routed_experts": hf["num_experts"], "n_shared_experts": hf.get("num_shared_experts", 0),
           "first_k_dense_replace": dense_first(hf)}
    return llama_like_config({**hf, "attention_bias": False, "mlp_bias": False}, qk_norm="head",
                             norm_eps=hf.get("rms_norm_eps", 1e-5), **nope_window_fields(hf), **moe_fields(moe, 1),
                             **v3_router_fields(hf))


def from_config(cfg: ModelConfig) -> dict:
    check_v3_mixture(cfg)
    if cfg.qk_norm != "head" or cfg.qkv_bias or cfg.positions != "rope" or cfg.sliding_window is not None:
        raise LlmarchError("model_type exaone_moe needs a per-head QK-norm (qk_norm='head'), no q, k, v biases, and "
                           "RoPE with windows only per layer type")
    k, moe = first_dense(cfg), moe_hf(cfg)
    out = llama_like_hf(cfg, architectures=["ExaoneMoeForCausalLM"], **nope_window_hf(cfg),
                        num_experts=moe.pop("n_routed_experts"), num_shared_experts=moe.pop("n_shared_experts"),
                        mlp_layer_types=["dense"] * k + ["sparse"] * (cfg.n_layers - k),
                        norm_topk_prob=cfg.router_renormalize, **moe)
    for key in ("mlp_bias", "attention_bias"):
        out.pop(key)
    return out


FAMILIES.register("exaone_moe")(Family(RULES, to_config, from_config, IGNORE, stacked_experts=STACKED, mtp=True))
