"""Apertus 1.5's language model (`model_type: apertus1p5_text`; Swiss AI 2026, Apertus-v1.5-8B; transformers'
Apertus1p5TextForCausalLM): Apertus exactly (apertus.py: per-head QK-norm, xIELU MLP) over a vocabulary extended
with image and audio codes (266,752 ids by default), whose LM head may be pruned to the text-only prefix:
`output_vocab_size` rows scoring ids 0..output_vocab_size - 1 (head_vocab), the ids past it input-only. The
published checkpoints keep the head untied. The multimodal wrapper (`apertus1p5`, with its vision and audio
tokenizers) is not read."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from . import apertus
from .hf import FAMILIES, Family
from .llama import IGNORE

_VOCAB = 266752  # Apertus1p5TextConfig's default


def to_config(hf: dict) -> ModelConfig:
    hf = {"vocab_size": _VOCAB, **hf}
    rows = hf.get("output_vocab_size")
    if rows is not None and hf.get("tie_word_embeddings") and rows != hf["vocab_size"]:
        raise LlmarchError("apertus1p5_text: a pruned head (output_vocab_size) tied to the embeddings is not "
                           "supported")
    cfg = apertus.to_config(hf)
    return cfg.replace(head_vocab=None if rows in (None, cfg.vocab_size) else int(rows))


def from_config(cfg: ModelConfig) -> dict:
    out = apertus.from_config(cfg)
    out.update(architectures=["Apertus1p5TextForCausalLM"], output_vocab_size=cfg.head_vocab)
    return out


FAMILIES.register("apertus1p5_text")(Family(apertus.RULES, to_config, from_config, IGNORE))
