"""Text in, text out: prompts encoded, decoded by `generate` (decode.py), the ids turned back into text; with
`stream`, the new text handed over a piece at a time as it is produced."""
from __future__ import annotations

from typing import Callable

from ..data.tokenizer import ends_in_eos
from ..errors import LlmarchError
from .decode import generate


def generate_text(model, tokenizer, prompts: list[str | list[int]], max_new_tokens: int, temperature: float = 0.0,
                  top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                  num_beams: int = 1, length_penalty: float = 1.0, early_stopping: bool | str = False,
                  compile: bool = False, stream: Callable[[str], None] | None = None,
                  prompt_lookup: int = 0, draft=None, num_draft: int = 4, stats: dict | None = None,
                  penalties=None, rules=None, images: dict | None = None) -> list[str]:
    """Per prompt, the prompt and its continuation (decoder-only) or the answer (encoder-decoder: the prompt is
    the source), without end-of-text tokens. num_beams > 1: beam search, which is greedy (temperature ignored).
    stream (one prompt, no beams): called with each piece of new text as soon as it is whole characters.
    prompt_lookup: greedy decoding with drafts from the context; draft, num_draft: a draft model proposing
    tokens (speculative decoding); stats: what they drafted and kept; penalties: repetition, presence and
    frequency penalties; rules: suppressed tokens (generate's arguments of these names; generation_config.py's
    token_rules reads a checkpoint's). A prompt may be given as its ids (a prompt about images:
    vision/prompts.py), images then the model's image arguments (generate's pixel_values, and image_grid_thw where the
    image processor gives one: vision/preprocess.py)."""
    if stream is not None and (len(prompts) != 1 or num_beams > 1):
        raise LlmarchError("streaming is for one prompt without beam search")
    encoded = [prompt_ids(tokenizer, p) for p in prompts]
    if model.config.is_encoder_decoder:
        encoded = [ends_in_eos(ids, tokenizer.eos_id) for ids in encoded]  # sources end in eos, as in training
    if num_beams > 1:
        temperature = 0.0
    # a chat model may end a turn with any of several ids (generation_config.json's eos_token_id list)
    stop = [[i] for i in tokenizer.eos_ids if i != tokenizer.eos_id]
    # a decoder-only row's text runs on from its prompt's: the new ids are decoded after the prompt's last ones
    pieces = None if stream is None else text_pieces(tokenizer, stream,
                                                     [] if model.config.is_encoder_decoder else encoded[0])
    rows = generate(model, encoded, max_new_tokens, temperature, top_k, top_p, eos_id=tokenizer.eos_id, seed=seed,
                    on_tokens=pieces, num_beams=num_beams,
                    length_penalty=length_penalty, early_stopping=early_stopping, compile=compile, stop=stop,
                    prompt_lookup=prompt_lookup, draft=draft, num_draft=num_draft, stats=stats, penalties=penalties,
                    rules=rules, **(images or {}))
    if pieces is not None:
        pieces.end()
    return [tokenizer.decode(t for t in row if t not in tokenizer.eos_ids) for row in rows]


def prompt_ids(tokenizer, prompt: str | list[int]) -> list[int]:
    """A prompt's ids: its text encoded, or the ids given."""
    return tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)


# tokens before the new ones decoded with them (vLLM's incremental detokenizer likewise starts 5 tokens back)
CONTEXT = 5


class NewText:
    """The text new ids add after `context` ids (a prompt), as the tokenizer decodes them together. A decoder reads
    a token by its neighbours: SentencePiece's drops the first token's leading space (Strip), WordPiece's joins
    words with spaces; decoding the new ids alone would drop the space before them. So the context's last ids are
    decoded with them and the text after the context's own decoding kept: prompt text + new text is the text of
    the whole row (as vLLM's incremental detokenizer does). No context: the new ids' own decoding (a chat
    reply, as transformers decodes the generated ids)."""

    def __init__(self, tokenizer, context=()):
        self.tok, self.context = tokenizer, [int(i) for i in context][-CONTEXT:]
        self.skip = len(tokenizer.decode(self.context)) if self.context else 0
        self.ids: list[int] = []

    def add(self, token: int) -> str:
        """A new id -> all the new text so far (ending in U+FFFD while inside a multi-byte character)."""
        self.ids.append(int(token))
        return self.tok.decode(self.context + self.ids)[self.skip:]


class text_pieces:
    """An on_tokens callback for one row: decodes all its new ids so far (after `context`, NewText) and hands
    `stream` the text not yet handed over, holding it back while it ends inside a multi-byte character; `end()`
    (once generation is over) hands over what was held back, an unfinished character's U+FFFD included, so the
    pieces add up to the row's decoded text."""

    def __init__(self, tokenizer, stream: Callable[[str], None], context=()):
        self.tok, self.stream, self.new = tokenizer, stream, NewText(tokenizer, context)
        self.text = self.shown = ""

    def __call__(self, ids) -> None:
        if int(ids[0]) in self.tok.eos_ids:  # an end, not text (as in generate_text's result)
            return
        self.text = self.new.add(int(ids[0]))
        if not self.text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
            self._show()

    def end(self) -> None:
        self._show()

    def _show(self) -> None:
        if len(self.text) > len(self.shown):
            self.stream(self.text[len(self.shown):])
        self.shown = self.text
