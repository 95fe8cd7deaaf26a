"""VaultGemma (`model_type: vaultgemma`; Google 2025, "VaultGemma: A Differentially Private Gemma Model"): Gemma 2's
layout (gemma2.py: offset RMSNorm, scaled embeddings, the attention scale and soft-caps, sliding and full layers)
with pre-norms only: input_layernorm before attention and pre_feedforward_layernorm before the FFN, no norms on
the sublayers' outputs (norm_placement 'pre')."""
from __future__ import annotations

from ..config import ModelConfig
from .gemma2 import DEFAULTS, gemma_like_config, gemma_like_hf
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES
from .mapping import Rule

RULES = [r for r in LLAMA_RULES if "post_attention_layernorm" not in r.hf[0]] + [
    Rule.of("model.layers.{i}.pre_feedforward_layernorm.weight", "blocks.{i}.ln2.weight")]


def to_config(hf: dict) -> ModelConfig:
    return gemma_like_config(hf, DEFAULTS, period=2, norm_placement="pre")


def from_config(cfg: ModelConfig) -> dict:
    return gemma_like_hf(cfg, to_config, architectures=["VaultGemmaForCausalLM"])


FAMILIES.register("vaultgemma")(Family(RULES, to_config, from_config, IGNORE))
