"""Mistral (`model_type: mistral`): LLaMA's weights and config plus sliding-window attention, where each
query attends to itself and the `sliding_window - 1` positions before it (in prefill and in decoding)."""
from __future__ import annotations

from ..config import ModelConfig
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES, llama_like_config, llama_like_hf


def to_config(hf: dict) -> ModelConfig:
    return llama_like_config(hf, sliding_window=hf.get("sliding_window"))


def from_config(cfg: ModelConfig) -> dict:
    return llama_like_hf(cfg, architectures=["MistralForCausalLM"], sliding_window=cfg.sliding_window)


FAMILIES.register("mistral")(Family(RULES, to_config, from_config, IGNORE))
