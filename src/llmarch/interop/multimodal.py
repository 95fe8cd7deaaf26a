"""The text model of a vision-language checkpoint (Gemma 3 4B-27B, Qwen3.5, Llama 4 ...): a wrapper
config whose text_config is a text family's, the text model's weights under model.language_model. (as
transformers 5 saves them) or language_model.model. (as many are published), its head as it is, and a vision tower
and projector that are not read. llmarch reads the text model through the text family's own rules and writes it
back as that family. Whether the head is tied is read off the checkpoint (an lm_head.weight or none), as
transformers does: the wrapper's and the text config's tie_word_embeddings may disagree."""
from __future__ import annotations

import dataclasses
from typing import Callable

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .mapping import Rule


def text_rules(rules: list[Rule], under: str = "language_model") -> list[Rule]:
    """A text family's rules with model.* under model.<under>.* (Emu3's text model is its text_model), the head as
    it is."""
    return [dataclasses.replace(r, hf=tuple(f"model.{under}." + h.removeprefix("model.") for h in r.hf))
            if r.hf[0].startswith("model.") else r for r in rules]


def text_name(name: str, under: str = "language_model") -> str:
    """Published checkpoints' names (<under>.model.*, <under>.lm_head.*) as transformers 5's."""
    if name.startswith(f"{under}.model."):
        return f"model.{under}." + name.removeprefix(f"{under}.model.")
    return name.removeprefix(f"{under}.") if name.startswith(f"{under}.lm_head.") else name


def register(wrapper: str, text: Family, to_config: Callable[[dict], ModelConfig], text_type: str,
             ignore: tuple[str, ...], under: str = "language_model",
             canonical: Callable[[str], str] | None = None) -> None:
    """`wrapper` as the vision-language model_type whose text model is `text`'s; to_config reads the wrapper's
    config.json; `ignore`: the regexes of what is not read (vision tower, projector ...); `under`: the text model's
    name in the wrapper; canonical: the published names as transformers 5's, where they differ from text_name's."""
    def no_export(cfg: ModelConfig) -> dict:
        raise LlmarchError(f"llmarch holds {wrapper}'s text model only; export it with hf_model_type={text_type!r}")

    more = text.more_rules
    FAMILIES.register(wrapper)(Family(text_rules(text.rules, under), to_config, no_export, text.ignore + ignore,
                                      canonical=canonical or (lambda name: text_name(name, under)),
                                      stacked_experts=text.stacked_experts, tied_by_checkpoint=True,
                                      more_rules=None if more is None else lambda cfg: text_rules(more(cfg), under)))
