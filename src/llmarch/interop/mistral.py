"""Mistral (`model_type: mistral`): LLaMA's weights and config plus sliding-window attention, where each
query attends to itself and the `sliding_window - 1` positions before it (in prefill and in decoding). Mistral
Small 3.1 and 3.2 (`mistral3`, Mistral3ForConditionalGeneration) are published as vision-language checkpoints whose
text model is a Mistral (or a Ministral 3, ministral3.py): read as such (multimodal.py), the Pixtral vision tower and
projector not read."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from . import multimodal
from .gemma3 import VISION
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES, llama_like_config, llama_like_hf


def to_config(hf: dict) -> ModelConfig:
    return llama_like_config(hf, sliding_window=hf.get("sliding_window"))


def from_config(cfg: ModelConfig) -> dict:
    return llama_like_hf(cfg, architectures=["MistralForCausalLM"], sliding_window=cfg.sliding_window)


FAMILIES.register("mistral")(Family(RULES, to_config, from_config, IGNORE))


def mistral3_config(hf: dict) -> ModelConfig:
    """The text model of a vision-language checkpoint: a Mistral (Mistral Small 3.1/3.2) or a Ministral 3."""
    text = {"model_type": "mistral", **(hf.get("text_config") or {})}
    if text["model_type"] not in ("mistral", "ministral3"):
        raise LlmarchError(f"mistral3 with a {text['model_type']!r} text model is not supported (mistral, "
                           "ministral3)")
    return FAMILIES[text["model_type"]].to_config({**text, "_name_or_path": hf.get("_name_or_path")})


multimodal.register("mistral3", FAMILIES["mistral"], mistral3_config, "mistral", VISION)
