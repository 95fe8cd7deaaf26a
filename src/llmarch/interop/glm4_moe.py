"""GLM-4.5 and GLM-4.6 (`model_type: glm4_moe`; Zhipu AI 2025, "GLM-4.5: Agentic, Reasoning, and Coding (ARC)
Foundation Models"): LLaMA's grouped-query attention with RoPE on half of each head's dims (partial_rotary_factor
0.5, LLaMA's halves: no reordering, unlike GLM-4's pairs), q, k, v biases (attention_bias), an optional per-head
QK-norm (use_qk_norm), and DeepSeek-V3's mixture after first_k_dense_replace dense layers: sigmoid scores, an expert
bias for the choice, n_group groups of which topk_group are chosen, the chosen scores renormalised (norm_topk_prob)
and times routed_scaling_factor, plus shared experts. The multi-token-prediction layer after the last is not
loaded."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .deepseek_v2 import moe_fields, moe_hf, moe_rules, v3_router_fields
from .hf import FAMILIES, Family
from .llama import IGNORE, llama_like_config, llama_like_hf, rope_fraction, rope_parameters
from .mixtral import STACKED
from .qwen3 import RULES as QWEN3_RULES

RULES = QWEN3_RULES + moe_rules()


def to_config(hf: dict) -> ModelConfig:
    return llama_like_config(
        {**hf, "attention_bias": False, "mlp_bias": False}, qkv_bias=bool(hf.get("attention_bias", False)),
        rope_fraction=rope_fraction(hf, 0.5), norm_eps=hf.get("rms_norm_eps", 1e-5),
        qk_norm="head" if hf.get("use_qk_norm") else "none", **moe_fields(hf, 1), **v3_router_fields(hf))


def check_v3_mixture(cfg: ModelConfig) -> None:
    """What GLM-4.5's and dots.llm1's tensors and configs can hold: DeepSeek-V3's mixture on pre-norm blocks."""
    kind = cfg.hf_model_type
    if not cfg.n_experts or cfg.router_scoring != "sigmoid" or not cfg.expert_bias or cfg.moe_period != 1 \
            or cfg.capacity_factor is not None or cfg.expert_capacity is not None or cfg.shared_expert_gate \
            or cfg.shared_hidden != cfg.n_shared_experts * cfg.expert_hidden:
        raise LlmarchError(f"model_type {kind} routes by sigmoid scores with an expert bias (router_scoring "
                           "'sigmoid', expert_bias True) to uncapped experts after the first dense layers, with "
                           "ungated shared experts of the experts' width")
    if cfg.bias or cfg.ffn != "swiglu" or cfg.norm != "rmsnorm" or cfg.norm_placement != "pre":
        raise LlmarchError(f"model_type {kind} has pre-norm RMSNorm and SwiGLU without o or MLP biases")


def from_config(cfg: ModelConfig) -> dict:
    check_v3_mixture(cfg)
    if cfg.qk_norm not in ("none", "head") or cfg.sliding_window is not None or cfg.layer_types is not None:
        raise LlmarchError("model_type glm4_moe has a per-head QK-norm or none, and no windows or layer types")
    out = llama_like_hf(cfg, architectures=["Glm4MoeForCausalLM"],
                        rope_parameters=rope_parameters(cfg, partial=True),
                        use_qk_norm=cfg.qk_norm == "head", norm_topk_prob=cfg.router_renormalize,
                        num_mtp_layers=0, **moe_hf(cfg))
    out.pop("mlp_bias")
    return out


FAMILIES.register("glm4_moe")(Family(RULES, to_config, from_config, IGNORE, stacked_experts=STACKED, mtp=True))
