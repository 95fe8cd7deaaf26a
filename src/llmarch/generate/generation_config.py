"""What a checkpoint's generation_config.json asks of decoding, as transformers' generate reads it: suppressed
tokens (rules.py) for any model, and a speech model's decoder prompt and timestamp rules, chosen by the fields the
file holds, not by the model's type:
- decoder_prompt: decoder_start_token_id, then the language (lang_to_id, e.g. "<|en|>": 50259; is_multilingual),
  the task (task_to_id: transcribe or translate) and <|notimestamps|> (no_timestamps_token_id) unless timestamps are
  asked for, as transformers' WhisperGenerationMixin builds its init tokens;
- token_rules: suppress_tokens, begin_suppress_tokens, and with timestamps the rules of whisper_timestamps.py
  (no_timestamps_token_id, max_initial_timestamp_index, eos_token_id)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..errors import LlmarchError
from .rules import TokenRules
from .whisper_languages import language_token
from .whisper_timestamps import WhisperTimestamps

FILE = "generation_config.json"
TASKS = ("transcribe", "translate")


def read_generation_config(source) -> dict:
    """A directory's generation_config.json (a Hugging Face or llmarch checkpoint's), or a tokenizer's copy of it
    (data/tokenizer.py keeps it among its side files), as a dict; {} where there is none."""
    if not isinstance(source, (str, Path)):  # a tokenizer: llmarch's byte tokenizer has no side files
        text = getattr(source, "side_files", {}).get(FILE)
    else:
        path = Path(source) / FILE
        text = path.read_bytes() if path.is_file() else None
    if text is None:
        return {}
    try:
        gen = json.loads(text)
    except ValueError as e:
        raise LlmarchError(f"cannot read {FILE}: {e}") from None
    if not isinstance(gen, dict):
        raise LlmarchError(f"{FILE} holds no JSON object")
    return gen


def token_rules(gen: dict, suppress: Sequence[int] | None = None, begin_suppress: Sequence[int] | None = None,
                timestamps: bool = False) -> TokenRules:
    """The rules gen asks for; suppress / begin_suppress, where given, in place of its suppress_tokens /
    begin_suppress_tokens. timestamps: Whisper's timestamp rules, which need gen's no_timestamps_token_id."""
    processors = ()
    if timestamps:
        processors = (WhisperTimestamps(timestamps_id(gen), _eos(gen), gen.get("max_initial_timestamp_index")),)
    return TokenRules(tuple(gen.get("suppress_tokens") or () if suppress is None else suppress),
                      tuple(gen.get("begin_suppress_tokens") or () if begin_suppress is None else begin_suppress),
                      processors)


def decoder_prompt(gen: dict, start_id: int, language: str | None = None, task: str | None = None,
                   timestamps: bool = False, detected: int | None = None) -> list[int]:
    """The decoder's first tokens, as transformers' _retrieve_init_tokens: the start token (gen's
    decoder_start_token_id, else start_id), then the old forced_decoder_ids where neither language nor task is given,
    the language's id (`language` a code such as "en", its token "<|en|>" or its name, "English"; else `detected`,
    where needs_language), the task's (transcribe where a language is given without one) and <|notimestamps|>
    unless timestamps."""
    if gen.get("is_multilingual") is False and (language is not None or task is not None):
        raise LlmarchError("this checkpoint is English-only (generation_config is_multilingual false): no language "
                           "or task to give")
    prompt = [gen.get("decoder_start_token_id", start_id), *(forced_prompt(gen, language, task) or [])]
    lang = _language_id(gen, language) if language is not None else detected
    if lang is not None:
        prompt[1:2] = [lang]
    tasks = gen.get("task_to_id") or {}
    if task is not None:
        if task not in TASKS or task not in tasks:
            raise LlmarchError(f"task {task!r}: one of {', '.join(tasks or TASKS)} (the generation config's "
                               "task_to_id)")
        prompt.append(tasks[task])
    elif language is not None and tasks and not set(prompt) & set(tasks.values()):
        prompt.append(tasks["transcribe"])
    no_timestamps = gen.get("no_timestamps_token_id")
    if timestamps:
        timestamps_id(gen)
        if prompt[-1] == no_timestamps:
            prompt.pop()
    elif no_timestamps is not None and prompt[-1] != no_timestamps:
        prompt.append(no_timestamps)
    return [t for t in prompt if t is not None]


def forced_prompt(gen: dict, language: str | None, task: str | None) -> list[int | None] | None:
    """The tokens after the start token that an older generation config forces (forced_decoder_ids, pairs of position
    and id from position 1; an id of None: the language, to detect), read only where neither language nor task is
    given (transformers ignores them otherwise)."""
    forced = gen.get("forced_decoder_ids") if language is None and task is None else None
    if not forced:
        return None
    if [p for p, _ in forced] != list(range(1, len(forced) + 1)):
        raise LlmarchError(f"forced_decoder_ids {forced}: positions 1, 2, ... in order, as Whisper's prompt")
    return [t for _, t in forced]


def needs_language(gen: dict, language: str | None, task: str | None) -> bool:
    """Whether the language is to be detected first, as transformers does: none given (nor forced) to a checkpoint
    with lang_to_id. Its detection: the most likely language token after the start token alone (transcribe.py)."""
    forced = forced_prompt(gen, language, task)
    return language is None and bool(gen.get("lang_to_id")) and (not forced or forced[0] is None)


def language_ids(gen: dict) -> list[int]:
    return sorted(gen["lang_to_id"].values())


def _language_id(gen: dict, language: str) -> int:
    table = gen.get("lang_to_id")
    if not table:
        raise LlmarchError("a language needs the generation config's lang_to_id (a multilingual checkpoint's)")
    token = language_token(language)
    if token not in table:
        codes = ", ".join(k[2:-2] for k in table)
        raise LlmarchError(f"language {language!r} is not in the generation config's lang_to_id: a code of {codes}, "
                           "or its English name")
    return table[token]


def timestamps_id(gen: dict) -> int:
    if "no_timestamps_token_id" not in gen:
        raise LlmarchError("timestamps need the generation config's no_timestamps_token_id (a Whisper checkpoint's)")
    return gen["no_timestamps_token_id"]


def _eos(gen: dict) -> int:
    eos = gen.get("eos_token_id", gen.get("bos_token_id"))
    eos = eos[0] if isinstance(eos, list) and eos else eos
    if not isinstance(eos, int):
        raise LlmarchError("timestamps need the generation config's eos_token_id (text tokens lie below it)")
    return eos
