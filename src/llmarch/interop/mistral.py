"""Mistral (`model_type: mistral`): LLaMA's weights and config plus sliding-window attention, where each
query attends to itself and the `sliding_window - 1` positions before it (in prefill and in decoding). Mistral
Small 3.1 and 3.2 (`mistral3`, Mistral3ForConditionalGeneration) are published as vision-language checkpoints whose
text model is a Mistral (or a Ministral 3, ministral3.py): read as such (multimodal.py's text rules), with the Pixtral
vision tower and Mistral 3's projector (pixtral_vision.py, vision/pixtral_tower.py), and written back whole; the text
model is written as a Ministral 3 where it has the log-length query scaling a Mistral lacks."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from ..vision.pixtral_config import is_pixtral, pixtral_vision_config
from . import multimodal
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES, llama_like_config, llama_like_hf
from .pixtral_vision import vision_fields, vision_hf, vision_rules
from .vision_towers import canonical_name


def to_config(hf: dict) -> ModelConfig:
    return llama_like_config(hf, sliding_window=hf.get("sliding_window"))


def from_config(cfg: ModelConfig) -> dict:
    return llama_like_hf(cfg, architectures=["MistralForCausalLM"], sliding_window=cfg.sliding_window)


FAMILIES.register("mistral")(Family(RULES, to_config, from_config, IGNORE))


def mistral3_config(hf: dict) -> ModelConfig:
    """A vision-language checkpoint: its text model, a Mistral (Mistral Small 3.1/3.2) or a Ministral 3, with the
    Pixtral tower and projector."""
    text = {"model_type": "mistral", **(hf.get("text_config") or {})}
    if text["model_type"] not in ("mistral", "ministral3"):
        raise LlmarchError(f"mistral3 with a {text['model_type']!r} text model is not supported (mistral, "
                           "ministral3)")
    cfg = FAMILIES[text["model_type"]].to_config({**text, "_name_or_path": hf.get("_name_or_path")})
    return cfg.replace(vision=vision_fields(hf, cfg.d_model, cfg.norm_eps), hf_model_type="mistral3")


def mistral3_hf(cfg: ModelConfig) -> dict:
    if not is_pixtral(cfg.vision):
        raise LlmarchError("model_type mistral3 writes its Pixtral vision tower: this model has none (export it with "
                           "hf_model_type='mistral')")
    text_type = "ministral3" if cfg.attn_temp_scale else "mistral"
    text = FAMILIES[text_type].from_config(cfg.replace(vision=None, hf_model_type=text_type))
    text.pop("architectures", None)
    return dict(model_type="mistral3", architectures=["Mistral3ForConditionalGeneration"], text_config=text,
                tie_word_embeddings=cfg.tie_embeddings, **vision_hf(pixtral_vision_config(cfg.vision), cfg.norm_eps))


FAMILIES.register("mistral3")(Family(multimodal.text_rules(RULES), mistral3_config, mistral3_hf, IGNORE,
                                     canonical=canonical_name, tied_by_checkpoint=True,
                                     more_rules=lambda cfg: vision_rules(pixtral_vision_config(cfg.vision))))
