"""Param-2 MoE (`model_type: param2moe`; BharatGen 2026, Param2-17B-A2.4B; transformers runs it as
Glm4MoeForCausalLM): GLM-4.5 exactly (glm4_moe.py: GQA with an optional per-head QK-norm, DeepSeek-V3's
sigmoid-routed mixture after first_k_dense_replace dense layers) under a config class of its own, whose defaults
differ: RoPE over the whole head (partial_rotary_factor 1.0, where GLM-4.5's is 0.5), QK-norm on, a tied head,
head_dim 64. Its original configs' names are read as transformers' attribute_map reads them (`num_experts`,
`num_shared_experts`, `use_qkv_bias`, `num_mtp_layers`). Its checkpoints keep the original tensor names, which
transformers renames on load and back on save (its conversion mapping): `model.word_embeddings`, q, k, v fused in
`attention.query_key_value` (all q rows, then k, then v: our qkv_proj's layout), `attention.dense` (o_proj),
`attention.query_layernorm`/`key_layernorm` and `mlp.gate.expert_bias`. sarvam_moe.py reads Sarvam's the same way."""
from __future__ import annotations

from ..config import ModelConfig
from . import glm4_moe
from .hf import FAMILIES, Family
from .mapping import Rule
from .mixtral import STACKED

# GLM-4.5's tensor names as transformers loads them -> the original ones these checkpoints store
_RENAMES = (("model.embed_tokens.", "model.word_embeddings."), (".self_attn.", ".attention."),
            (".o_proj.", ".dense."), (".q_norm.", ".query_layernorm."), (".k_norm.", ".key_layernorm."),
            ("mlp.gate.e_score_correction_bias", "mlp.gate.expert_bias"))


def _original(name: str) -> str:
    for theirs, original in _RENAMES:
        name = name.replace(theirs, original)
    return name


# q, k, v fused in one stored tensor (its rows ours), the other names renamed
RULES = [Rule.of(f"model.layers.{{i}}.attention.query_key_value.{r.ours.rsplit('.', 1)[1]}", r.ours)
         if ".qkv_proj." in r.ours else Rule(tuple(map(_original, r.hf)), r.ours, r.layout) for r in glm4_moe.RULES]
# the original configs' names -> GLM-4.5's (the config classes' attribute_map)
_ALIASES = dict(num_experts="n_routed_experts", num_shared_experts="n_shared_experts", use_qkv_bias="attention_bias",
                num_mtp_layers="num_nextn_predict_layers", num_local_experts="n_routed_experts")
# Param2MoeConfig's defaults (Param2-17B-A2.4B's), Glm4MoeConfig's where it keeps them
DEFAULTS = dict(use_qk_norm=True, rms_norm_eps=1e-6, head_dim=64, routed_scaling_factor=2.5, num_experts_per_tok=6,
                num_key_value_heads=8, n_group=1, topk_group=1, first_k_dense_replace=1, norm_topk_prob=True,
                tie_word_embeddings=True, moe_intermediate_size=2048, n_shared_experts=2, n_routed_experts=64,
                max_position_embeddings=32768, rope_theta=500000.0)


def glm4_moe_variant(hf: dict, defaults: dict) -> ModelConfig:
    """A GLM-4.5 variant's config.json read with its class's `defaults` and its aliases, RoPE over the whole head
    unless partial_rotary_factor says otherwise."""
    named = {_ALIASES.get(k, k): v for k, v in hf.items()}
    if named.get("rope_parameters"):
        named["rope_parameters"] = {"partial_rotary_factor": named.get("partial_rotary_factor", 1.0),
                                    **named["rope_parameters"]}
    else:
        named.setdefault("partial_rotary_factor", 1.0)
    return glm4_moe.to_config({**defaults, **named})


def to_config(hf: dict) -> ModelConfig:
    return glm4_moe_variant(hf, DEFAULTS)


FAMILIES.register("param2moe")(Family(RULES, to_config, glm4_moe.from_config, glm4_moe.IGNORE,
                                      stacked_experts=STACKED, mtp=True))
