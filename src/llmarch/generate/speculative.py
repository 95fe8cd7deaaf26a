"""Speculative decoding (Leviathan et al. 2023; Chen et al. 2023) with prompt lookup (Saxena 2023, "Prompt
Lookup Decoding"): the draft is no second model but the context itself. When the last n tokens (n = max_ngram
down to 1) occurred earlier in the prompt or the output, the up to `num_draft` tokens that followed them there
are the draft. One step of the engine then reads the last token and the draft together (Engine.extend), and the
greedy choice after each position says how many drafted tokens the model would have produced itself: those are
kept, plus the model's own token after them, and the cache rewinds past the rest. Each step yields 1 to
num_draft + 1 tokens, all of them what greedy decoding yields (up to ties between logits that a different
summation order can flip), at the cost of one forward over num_draft + 1 tokens; on code and text that repeats
spans of its context, most drafts are kept.

Greedy only (sampled drafts need the rejection rule of Leviathan et al. §2.3), and for decoder-only models whose
decode states are indexed by slot (KV caches: `by_slot`), which can rewind. `speculate` runs the rounds of a
Speculator (PromptLookup here, draft_model.DraftModel) for one prompt; the server drives the same rounds one at a
time (serve/speculation.py)."""
from __future__ import annotations

import torch

from ..errors import LlmarchError
from ..models.stack import check_ids
from .engine import Engine
from .penalties import Penalties


def lookup(seq: list[int], num_draft: int, max_ngram: int = 3) -> list[int]:
    """The tokens after the latest earlier occurrence of seq's last n-gram (longest n first), up to num_draft."""
    for n in range(min(max_ngram, len(seq) - 1), 0, -1):
        tail = seq[-n:]
        for start in range(len(seq) - n - 1, -1, -1):
            if seq[start:start + n] == tail:
                return seq[start + n:start + n + num_draft]
    return []


def prompt_lookup_rows(model, prompts, max_new_tokens: int, num_draft: int, eos_id: int | None, stop,
                       on_tokens=None, stats: dict | None = None,
                       penalties: Penalties | None = None) -> list[list[int]]:
    """generate(..., prompt_lookup=num_draft) for prompts given as lists: each decoded alone. Stop sequences
    of one token end a row as eos_id does. stats (if given) sums drafted, accepted and steps over them."""
    ends = ending_ids(prompts, eos_id, stop, on_tokens, "prompt lookup")
    rows, counts = [], []
    for p in prompts:
        counts.append({})
        rows.append(prompt_lookup_generate(model, p, max_new_tokens, num_draft, ends, stats=counts[-1],
                                           on_tokens=on_tokens, penalties=penalties))
    if stats is not None:
        stats.update(add_counts(counts))
    return rows


def add_counts(counts: list[dict]) -> dict:
    """Per-prompt drafted, accepted and steps, summed."""
    return {k: sum(c[k] for c in counts) for k in ("drafted", "accepted", "steps")}


def ending_ids(prompts, eos_id: int | None, stop, on_tokens, what: str) -> set[int]:
    """The ids that end a row, for speculative decoding of prompts given as lists, each decoded alone: eos_id
    and stop sequences of one token (longer ones would end a row inside an accepted draft)."""
    if isinstance(prompts, torch.Tensor) or any(len(s) != 1 for s in stop):
        raise LlmarchError(f"{what} takes prompts as lists of ids, and stop sequences of one token")
    if on_tokens is not None and len(prompts) != 1:
        raise LlmarchError(f"streaming with {what} is for one prompt")
    return {s[0] for s in stop} | ({eos_id} if eos_id is not None else set())


def prompt_lookup_generate(model, prompt: list[int], max_new_tokens: int, num_draft: int,
                           eos_id: int | set[int] | None = None, max_ngram: int = 3, stats: dict | None = None,
                           on_tokens=None, penalties: Penalties | None = None) -> list[int]:
    """Greedy decoding of one prompt with prompt-lookup drafts -> prompt + new ids (up to and including eos_id,
    an id or a set of ids that end it). stats, if given, receives drafted, accepted and steps (forwards after
    the prompt's); on_tokens, each new id as a (1,) tensor (streaming); penalties (penalties.py), on the logits
    of every position checked."""
    if not prompt:
        raise LlmarchError("every prompt needs at least one token")
    total = len(prompt) + min(max_new_tokens, model.config.context_length - len(prompt))
    check_ids(torch.tensor([prompt], dtype=torch.long), model.config, None)
    with PromptLookup(model, total, num_draft, max_ngram, penalties) as spec:
        seq = speculate(spec, prompt, total, eos_id, on_tokens)
    if stats is not None:
        stats.update(spec.counts)
    return seq


def speculate(spec: "Speculator", prompt: list[int], total: int, eos_id: int | set[int] | None,
              on_tokens=None) -> list[int]:
    """A speculator's rounds from the prompt until `total` tokens or an id of eos_id (an id or a set of ids)
    -> prompt + new ids, up to and including the end."""
    ends = eos_id if isinstance(eos_id, set) else set() if eos_id is None else {eos_id}
    seq, new = list(prompt), []
    while len(seq) < total and not (new and new[-1] in ends):
        new = spec.step(seq)
        end = next((i for i, t in enumerate(new) if t in ends), None)
        new = new[:total - len(seq) if end is None else min(end + 1, total - len(seq))]
        seq += new
        show_tokens(on_tokens, new)
    return seq


class Speculator:
    """One sequence's speculative decoding, a round at a time, over engines of its own (one row each): a
    subclass's `step(seq)` takes the prompt and the tokens so far and returns the next ones (1 or more). Between
    rounds the target's engine has read all of them but the last (`target.length == len(seq) - 1`), so its
    decode state can be handed on (the server moves a request into its running batch this way:
    serve/scheduler.py). counts: drafted, accepted, steps (target forwards)."""

    def __init__(self, engines: list[tuple[Engine, str]], penalties: Penalties | None = None):
        self.engines = [engine for engine, _ in engines]
        self.target = self.engines[0]
        self.counts = dict(drafted=0, accepted=0, steps=0)
        self.penalties, self.seen = penalties, None  # seen: from the first round's sequence, its prompt
        try:
            for engine, what in engines:
                engine.check_rewind(what)
        except LlmarchError:
            self.close()
            raise

    def penalized(self, seq: list[int], logits: torch.Tensor, drafted: list[int] = ()) -> torch.Tensor:
        """logits (T, V), the last T positions' after seq and the drafted tokens -> as the penalties
        (penalties.py) leave them, each position's by the tokens before it (Seen.along); none: as they are."""
        if self.penalties is None:
            return logits
        if self.seen is None:
            self.seen = self.penalties.start(torch.tensor([seq], device=logits.device), logits.shape[-1])
        return self.seen.along(logits, list(drafted))

    def took(self, new: list[int]) -> list[int]:
        """A round's new tokens, counted as generated for the penalties."""
        for t in new if self.seen is not None else ():
            self.seen.add(torch.tensor([t], device=self.seen.counts.device))
        return new

    def count(self, drafted: int, accepted: int) -> None:
        self.counts = dict(drafted=self.counts["drafted"] + drafted, accepted=self.counts["accepted"] + accepted,
                           steps=self.counts["steps"] + 1)

    def close(self) -> None:
        for engine in self.engines:
            engine.__exit__(None, None, None)

    def __enter__(self) -> "Speculator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class PromptLookup(Speculator):
    """Greedy rounds with drafts looked up in the sequence itself, for sequences of up to `total` tokens: the
    first round reads the prompt (a prefill, not counted as a step); each later one reads the last token and a
    draft of up to num_draft tokens in one forward (Engine.extend), keeps the drafted tokens that greedy
    decoding would have produced, and the model's own token after them."""

    def __init__(self, model, total: int, num_draft: int, max_ngram: int = 3, penalties: Penalties | None = None):
        cfg = model.config
        if cfg.is_encoder_decoder or not cfg.causal:
            raise LlmarchError(f"{cfg.name}: prompt lookup decodes decoder-only models")
        if cfg.prefix_bidirectional:  # a drafted run read in one call would see itself both ways
            raise LlmarchError(f"{cfg.name}: prompt lookup reads drafts several tokens a call, which a prefix LM "
                               "(prefix_bidirectional) reads both ways")
        if num_draft < 1 or max_ngram < 1:
            raise LlmarchError(f"prompt lookup needs num_draft >= 1 and max_ngram >= 1, got {num_draft}, "
                               f"{max_ngram}")
        self.total, self.num_draft, self.max_ngram = total, num_draft, max_ngram
        super().__init__([(Engine(model, 1, total), "prompt lookup")], penalties)

    @torch.inference_mode()
    def step(self, seq: list[int]) -> list[int]:
        engine, device = self.target, self.target.slots.device
        if engine.length == 0:
            logits = engine.prefill(torch.tensor([seq], device=device))  # (1, V)
            return self.took([int(self.penalized(seq, logits)[0].argmax())])
        draft = lookup(seq, min(self.num_draft, self.total - len(seq)), self.max_ngram)
        before = engine.length
        logits = engine.extend(torch.tensor([seq[-1:] + draft], device=device))[0]  # (1 + d, V)
        greedy = self.penalized(seq, logits, draft).argmax(-1).tolist()
        n = 0
        while n < len(draft) and draft[n] == greedy[n]:
            n += 1
        engine.rewind(before + 1 + n)
        self.count(len(draft), n)
        return self.took(draft[:n] + [greedy[n]])


def show_tokens(on_tokens, new: list[int]) -> None:
    for t in new if on_tokens is not None else ():
        on_tokens(torch.tensor([t]))
