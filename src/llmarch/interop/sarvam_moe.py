"""Sarvam MoE (`model_type: sarvam_moe`; Sarvam AI 2026, sarvam-30b; transformers runs it as Glm4MoeForCausalLM):
GLM-4.5 exactly (glm4_moe.py) under a config class of its own, read as Param-2's (param2moe.py): RoPE over the whole
head, QK-norm on, the original tensor names, head_dim 64, 4 key-value heads, RoPE base 8e6, an untied head; the
original config's names (`num_experts`, `num_shared_experts`, `use_qkv_bias`) read as transformers' attribute_map
reads them."""
from __future__ import annotations

from ..config import ModelConfig
from . import glm4_moe
from .hf import FAMILIES, Family
from .mixtral import STACKED
from .param2moe import RULES, glm4_moe_variant

# SarvamMoEConfig's defaults (sarvam-30b's), Glm4MoeConfig's where it keeps them
DEFAULTS = dict(use_qk_norm=True, rms_norm_eps=1e-6, head_dim=64, routed_scaling_factor=2.5, num_experts_per_tok=6,
                num_key_value_heads=4, n_group=1, topk_group=1, first_k_dense_replace=1, norm_topk_prob=True,
                tie_word_embeddings=False, moe_intermediate_size=1024, n_shared_experts=1, n_routed_experts=128,
                max_position_embeddings=131072, rope_theta=8000000.0)


def to_config(hf: dict) -> ModelConfig:
    return glm4_moe_variant(hf, DEFAULTS)


FAMILIES.register("sarvam_moe")(Family(RULES, to_config, glm4_moe.from_config, glm4_moe.IGNORE,
                                       stacked_experts=STACKED, mtp=True))
