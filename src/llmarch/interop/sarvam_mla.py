"""Sarvam MLA (`model_type: sarvam_mla`; Sarvam AI 2026, sarvam-105b; transformers runs it as
DeepseekV3ForCausalLM): DeepSeek-V3 exactly (deepseek_v3.py: latent attention with interleaved RoPE rows, the sigmoid
router with its expert bias, shared experts, dense first layers) under a config class of its own, whose defaults
differ: one query projection (q_lora_rank null), one group of experts (n_group, topk_group 1), one dense layer
first. The original config's format is read as transformers reads it: `num_experts`, `num_shared_experts` and
`num_mtp_layers` as aliases, its `head_dim` (kv_lora_rank + qk_rope_head_dim, for vLLM) not read, and RoPE scaling
`deepseek_yarn` as YaRN."""
from __future__ import annotations

from ..config import ModelConfig
from . import deepseek_v3
from .deepseek_v2 import IGNORE, rules
from .hf import FAMILIES, Family

_ALIASES = dict(num_experts="n_routed_experts", num_shared_experts="n_shared_experts",
                num_mtp_layers="num_nextn_predict_layers", num_local_experts="n_routed_experts")
# SarvamMLAConfig's defaults (sarvam-105b's), DeepseekV3Config's where it keeps them
_DEFAULTS = dict(q_lora_rank=None, n_group=1, topk_group=1, first_k_dense_replace=1, n_routed_experts=128,
                 kv_lora_rank=512, qk_rope_head_dim=64, qk_nope_head_dim=128, v_head_dim=128, n_shared_experts=1,
                 routed_scaling_factor=2.5, num_experts_per_tok=8, moe_intermediate_size=2048, norm_topk_prob=True,
                 rms_norm_eps=1e-6, max_position_embeddings=4096, tie_word_embeddings=False)


def to_config(hf: dict) -> ModelConfig:
    named = {_ALIASES.get(k, k): v for k, v in hf.items() if k != "head_dim"}
    scaling = named.get("rope_scaling") or {}
    if "deepseek_yarn" in (scaling.get("type"), scaling.get("rope_type")):  # the original format: YaRN by another name
        named.pop("rope_scaling")
        named["rope_parameters"] = {**{k: v for k, v in scaling.items() if k != "type"}, "rope_type": "yarn"}
    return deepseek_v3.to_config({**_DEFAULTS, **named})


FAMILIES.register("sarvam_mla")(Family(rules(interleaved=True), to_config, deepseek_v3.from_config, IGNORE, mtp=True))
