"""Text in, text out: prompts encoded, decoded by `generate` (decode.py), the ids turned back into text; with
`stream`, the new text handed over a piece at a time as it is produced."""
from __future__ import annotations

from typing import Callable

from ..data.tokenizer import ends_in_eos
from ..errors import LlmarchError
from .decode import generate


def generate_text(model, tokenizer, prompts: list[str], max_new_tokens: int, temperature: float = 0.0,
                  top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                  num_beams: int = 1, length_penalty: float = 1.0, early_stopping: bool | str = False,
                  compile: bool = False, stream: Callable[[str], None] | None = None,
                  prompt_lookup: int = 0, draft=None, num_draft: int = 4, stats: dict | None = None,
                  penalties=None) -> list[str]:
    """Per prompt, the prompt and its continuation (decoder-only) or the answer (encoder-decoder: the prompt is
    the source), without end-of-text tokens. num_beams > 1: beam search, which is greedy (temperature ignored).
    stream (one prompt, no beams): called with each piece of new text as soon as it is whole characters.
    prompt_lookup: greedy decoding with drafts from the context; draft, num_draft: a draft model proposing
    tokens (speculative decoding); stats: what they drafted and kept; penalties: repetition, presence and
    frequency penalties (generate's arguments of these names)."""
    if stream is not None and (len(prompts) != 1 or num_beams > 1):
        raise LlmarchError("streaming is for one prompt without beam search")
    encoded = [tokenizer.encode(p) for p in prompts]
    if model.config.is_encoder_decoder:
        encoded = [ends_in_eos(ids, tokenizer.eos_id) for ids in encoded]  # sources end in eos, as in training
    if num_beams > 1:
        temperature = 0.0
    # a chat model may end a turn with any of several ids (generation_config.json's eos_token_id list)
    stop = [[i] for i in tokenizer.eos_ids if i != tokenizer.eos_id]
    rows = generate(model, encoded, max_new_tokens, temperature, top_k, top_p, eos_id=tokenizer.eos_id, seed=seed,
                    on_tokens=None if stream is None else text_pieces(tokenizer, stream), num_beams=num_beams,
                    length_penalty=length_penalty, early_stopping=early_stopping, compile=compile, stop=stop,
                    prompt_lookup=prompt_lookup, draft=draft, num_draft=num_draft, stats=stats, penalties=penalties)
    return [tokenizer.decode(t for t in row if t not in tokenizer.eos_ids) for row in rows]


def text_pieces(tokenizer, stream: Callable[[str], None]) -> Callable:
    """An on_tokens callback for one row: decodes all its new ids so far and hands `stream` the text not yet
    handed over, holding it back while it ends inside a multi-byte character."""
    new: list[int] = []
    shown = ""

    def show(ids) -> None:
        nonlocal shown
        if int(ids[0]) in tokenizer.eos_ids:  # an end, not text (as in generate_text's result)
            return
        new.append(int(ids[0]))
        text = tokenizer.decode(new)
        if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
            stream(text[len(shown):])
            shown = text

    return show
