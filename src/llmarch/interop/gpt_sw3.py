"""GPT-SW3 (`model_type: gpt-sw3`; AI Sweden's Nordic GPT models, Ekgren et al. 2023): transformers maps this
model_type onto GPT-2's classes (GPT2Config, GPT2LMHeadModel; only the tokenizer, GPTSw3Tokenizer, is its own), so
a checkpoint is GPT-2's architecture: gpt2.py's family (rules, ignored buffers, older names) with its config
translation, the model_type kept as gpt-sw3 both ways."""
from __future__ import annotations

from dataclasses import replace

from ..config import ModelConfig
from . import gpt2
from .hf import FAMILIES


def to_config(hf: dict) -> ModelConfig:
    return gpt2.to_config(hf).replace(hf_model_type="gpt-sw3", name=hf.get("_name_or_path") or "gpt-sw3")


def from_config(cfg: ModelConfig) -> dict:
    return {**gpt2.from_config(cfg), "model_type": "gpt-sw3"}


FAMILIES.register("gpt-sw3")(replace(FAMILIES["gpt2"], to_config=to_config, from_config=from_config))
