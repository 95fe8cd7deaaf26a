"""MiniCPM5-MoE (`model_type: minicpm5_moe`; OpenBMB 2026, MiniCPM5-15B-A2.5B; transformers' MiniCPM5MoeForCausalLM):
LLaMA's grouped-query attention with a sigmoid output gate per head (attn_output_gate, as Qwen3-Next's:
`q_gate_proj`, stored as `q_proj`, emits each head's queries then its gate, [q_0, g_0, q_1, g_1, ...], the rows our
qkv_proj keeps; Qiu et al. 2025, "Gated Attention for Large Language Models", eq. 5, G1), no QK-norm, RoPE over the
whole head, in pre-norm RMSNorm blocks; after the dense layers `mlp_layer_types` names first (default: one),
DeepSeek-V3's mixture (GLM-4.5's tensors: sigmoid scores, `e_score_correction_bias` for the choice, groups, the
chosen scores renormalised and times routed_scaling_factor, a shared MLP of n_shared_experts expert widths). The
router computes in fp32 whatever the model's dtype, as ours does."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .deepseek_v2 import dense_first, first_dense, moe_fields, moe_hf, moe_rules, v3_router_fields
from .glm4_moe import check_v3_mixture
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf, rope_fraction
from .mixtral import STACKED

# the checkpoint stores q_gate_proj as `q_proj` (transformers renames it on load), so LLaMA's names hold
RULES = LLAMA_RULES + moe_rules()
# MiniCPM5MoeConfig's defaults (MiniCPM5-15B-A2.5B's) where llama_like_config's or moe_fields' differ
_DEFAULTS = dict(num_key_value_heads=2, head_dim=128, rms_norm_eps=1e-6, max_position_embeddings=524288,
                 n_routed_experts=160, num_experts_per_tok=16, moe_intermediate_size=512, n_shared_experts=1,
                 routed_scaling_factor=3.66)


def to_config(hf: dict) -> ModelConfig:
    hf = {**_DEFAULTS, **hf}
    if hf.get("use_gated_attention") is False:
        raise LlmarchError("minicpm5_moe with use_gated_attention false is not supported (transformers refuses it)")
    if rope_fraction(hf, 1.0) != 1.0:
        raise LlmarchError("minicpm5_moe: partial_rotary_factor is not supported (its RoPE turns the whole head)")
    if not hf.get("rope_parameters") and "rope_theta" not in hf:
        hf["rope_parameters"] = {"rope_type": "default", "rope_theta": 5e6}  # the config class's default_theta
    k = dense_first(hf)  # mlp_layer_types' leading dense layers, else first_k_dense_replace (default 1)
    return llama_like_config({**hf, "attention_bias": False, "mlp_bias": False},
                             qkv_bias=bool(hf.get("attention_bias", False)), attn_output_gate=True,
                             norm_eps=hf["rms_norm_eps"], **moe_fields({**hf, "first_k_dense_replace": k}, k),
                             **v3_router_fields(hf))


def from_config(cfg: ModelConfig) -> dict:
    check_v3_mixture(cfg)
    if not cfg.attn_output_gate or cfg.qk_norm != "none" or cfg.rope_fraction != 1.0 \
            or cfg.sliding_window is not None or cfg.layer_types is not None:
        raise LlmarchError("model_type minicpm5_moe needs gated attention (attn_output_gate) without QK-norm, "
                           "RoPE over the whole head, and no windows or layer types")
    k = first_dense(cfg)
    out = llama_like_hf(cfg, architectures=["MiniCPM5MoeForCausalLM"], norm_topk_prob=cfg.router_renormalize,
                        mlp_layer_types=["dense"] * k + ["sparse"] * (cfg.n_layers - k), **moe_hf(cfg))
    for key in ("mlp_bias", "first_k_dense_replace"):
        out.pop(key)
    return out


FAMILIES.register("minicpm5_moe")(Family(RULES, to_config, from_config, IGNORE, stacked_experts=STACKED))
