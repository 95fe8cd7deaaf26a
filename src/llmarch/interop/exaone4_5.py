"""LG's EXAONE 4.5 (`model_type: exaone4_5`, transformers' Exaone4_5_ForConditionalGeneration): a vision-language
wrapper whose text model is EXAONE 4.0's (text_config of `model_type: exaone4`; its first releases named it
`exaone4_5_text`), its weights under model.language_model. (multimodal.py). The vision tower (`model.visual.`) is not
read; text-only positions are plain RoPE positions, as the wrapper passes them to its text model. Written back as
`exaone4`."""
from __future__ import annotations

from ..config import ModelConfig
from . import multimodal
from .hf import FAMILIES


def multimodal_config(hf: dict) -> ModelConfig:
    text = hf.get("text_config") or {}
    return FAMILIES["exaone4"].to_config({
        **text, "model_type": "exaone4", "_name_or_path": hf.get("_name_or_path"),
        "tie_word_embeddings": text.get("tie_word_embeddings", hf.get("tie_word_embeddings", False))})


multimodal.register("exaone4_5", FAMILIES["exaone4"], multimodal_config, "exaone4", (r"^model\.visual\.",))
