"""Gemma 4 unified's text model (`model_type: gemma4_unified_text`, transformers' Gemma4UnifiedForCausalLM, the text
model of `gemma4_unified`, google/gemma-4-12B): Gemma 4's decoder (gemma4.py: sliding and full layer geometries,
p-RoPE on the full layers, sandwich norms with plain gains, QK- and V-norms, unscaled scores, attention_k_eq_v, KV
sharing and double-wide MLPs, a stored layer scalar, a final soft-cap) without the per-layer input embeddings and the
mixture of experts, whose fields its config class removes; its defaults differ (sliding_window 1024, bidirectional
attention over vision tokens only, which leaves text causal). The vision and audio towers are not read."""
from __future__ import annotations

from ..config import ModelConfig
from . import gemma4
from .hf import FAMILIES, Family

# Gemma4UnifiedTextConfig's defaults: Gemma4TextConfig's, with no per-layer inputs or experts
DEFAULTS = {**gemma4.DEFAULTS, "sliding_window": 1024, "max_position_embeddings": 262_144}
_GONE = ("hidden_size_per_layer_input", "vocab_size_per_layer_input", "enable_moe_block", "num_experts",
         "top_k_experts", "moe_intermediate_size")


def to_config(hf: dict) -> ModelConfig:
    return gemma4.to_config({**hf, "hidden_size_per_layer_input": 0, "enable_moe_block": False}, DEFAULTS,
                            "gemma4_unified_text")


def _needs(cfg: ModelConfig) -> str | None:
    return "no per-layer input embeddings (ple_dim 0) and no experts" if cfg.ple_dim or cfg.n_experts else None


def from_config(cfg: ModelConfig) -> dict:
    out = gemma4.from_config(cfg, "Gemma4UnifiedForCausalLM", to_config)
    for key in _GONE:
        out.pop(key, None)
    return out


FAMILIES.register("gemma4_unified_text")(Family(gemma4.RULES, to_config, from_config, gemma4.IGNORE_SHARED,
                                                more_rules=gemma4.qkv_rules, needs=_needs))
