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
decode states are indexed by slot (KV caches: `by_slot`), which can rewind."""
from __future__ import annotations

import torch

from ..errors import LlmarchError
from ..models.stack import check_ids
from .engine import Engine


def lookup(seq: list[int], num_draft: int, max_ngram: int = 3) -> list[int]:
    """The tokens after the latest earlier occurrence of seq's last n-gram (longest n first), up to num_draft."""
    for n in range(min(max_ngram, len(seq) - 1), 0, -1):
        tail = seq[-n:]
        for start in range(len(seq) - n - 1, -1, -1):
            if seq[start:start + n] == tail:
                return seq[start + n:start + n + num_draft]
    return []


def prompt_lookup_rows(model, prompts, max_new_tokens: int, num_draft: int, eos_id: int | None, stop,
                       on_tokens=None, stats: dict | None = None) -> list[list[int]]:
    """generate(..., prompt_lookup=num_draft) for prompts given as lists: each decoded alone. Stop sequences
    of one token end a row as eos_id does. stats (if given) sums drafted, accepted and steps over them."""
    ends = ending_ids(prompts, eos_id, stop, on_tokens, "prompt lookup")
    rows, counts = [], []
    for p in prompts:
        counts.append({})
        rows.append(prompt_lookup_generate(model, p, max_new_tokens, num_draft, ends, stats=counts[-1],
                                           on_tokens=on_tokens))
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


@torch.inference_mode()
def prompt_lookup_generate(model, prompt: list[int], max_new_tokens: int, num_draft: int,
                           eos_id: int | set[int] | None = None, max_ngram: int = 3, stats: dict | None = None,
                           on_tokens=None) -> list[int]:
    """Greedy decoding of one prompt with prompt-lookup drafts -> prompt + new ids (up to and including eos_id,
    an id or a set of ids that end it). stats, if given, receives drafted, accepted and steps (forwards after
    the prompt's); on_tokens, each new id as a (1,) tensor (streaming)."""
    ends = eos_id if isinstance(eos_id, set) else set() if eos_id is None else {eos_id}
    cfg = model.config
    if cfg.is_encoder_decoder or not cfg.causal:
        raise LlmarchError(f"{cfg.name}: prompt lookup decodes decoder-only models")
    if num_draft < 1 or max_ngram < 1:
        raise LlmarchError(f"prompt lookup needs num_draft >= 1 and max_ngram >= 1, got {num_draft}, {max_ngram}")
    if not prompt:
        raise LlmarchError("every prompt needs at least one token")
    ids = torch.tensor([prompt], dtype=torch.long, device=next(model.parameters()).device)
    check_ids(ids, cfg, None)
    total = len(prompt) + min(max_new_tokens, cfg.context_length - len(prompt))
    seq, counts = list(prompt), dict(drafted=0, accepted=0, steps=0)
    with Engine(model, 1, total) as engine:
        engine.check_rewind("prompt lookup")
        if total > len(prompt):
            seq.append(int(engine.prefill(ids)[0].argmax()))
            show_tokens(on_tokens, seq[-1:])
        while len(seq) < total and seq[-1] not in ends:
            draft = lookup(seq, min(num_draft, total - len(seq)), max_ngram)
            before = engine.length
            logits = engine.extend(torch.tensor([seq[-1:] + draft], device=ids.device))[0]  # (1 + d, V)
            greedy = logits.argmax(-1).tolist()
            n = 0
            while n < len(draft) and draft[n] == greedy[n]:
                n += 1
            engine.rewind(before + 1 + n)
            new = draft[:n] + [greedy[n]]
            end = next((i for i, t in enumerate(new) if t in ends), None)
            new = new[:total - len(seq) if end is None else min(end + 1, total - len(seq))]
            seq += new
            show_tokens(on_tokens, new)
            counts["drafted"] += len(draft)
            counts["accepted"] += n
            counts["steps"] += 1
    if stats is not None:
        stats.update(counts)
    return seq


def show_tokens(on_tokens, new: list[int]) -> None:
    for t in new if on_tokens is not None else ():
        on_tokens(torch.tensor([t]))
