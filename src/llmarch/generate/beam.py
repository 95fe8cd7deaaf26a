"""Beam search (Graves 2012; Sutskever et al. 2014, §3.2 "a simple left-to-right beam search decoder"),
batched, over any model that can decode one token per beam from a reorderable KV cache.

The bookkeeping follows transformers' implementation, so the same checkpoint gives the same sequences:
at each step every row keeps the 2 * num_beams best continuations of its beams by summed log-probability;
those that end in eos (or reach the length limit) among the first num_beams become finished hypotheses,
scored sum_logprob / generated_length ** length_penalty, and the best num_beams that do not end continue.
A row stops when early_stopping=True and it holds num_beams finished hypotheses, or when no running beam
can still beat its worst finished one (early_stopping=False: judged at the current length; "never": at the
longest length, when length_penalty > 0), and every row stops at max_new_tokens."""
from __future__ import annotations

from typing import Callable

import torch

_NEG = -1.0e9  # a score no live hypothesis reaches


def beam_search(first_logits: torch.Tensor, step: Callable[[torch.Tensor], torch.Tensor],
                reorder: Callable[[torch.Tensor], None], prompt: torch.Tensor, num_beams: int, max_new_tokens: int,
                eos_id: int | None, fill_id: int, length_penalty: float = 1.0,
                early_stopping: bool | str = False, more_ends: list[int] = (),
                penalize: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """first_logits (B*nb, V): next-token logits after each row's prompt, the row repeated per beam.
    step(tokens (B*nb,)) -> logits (B*nb, V) for the next position; reorder(idx (B*nb,)) makes cache row r
    hold what row idx[r] held. prompt (B, P): each row's prompt (for an encoder-decoder, the start token).
    more_ends: ids that end a hypothesis as eos_id does (a chat model's several end-of-turn ids), kept in it.
    penalize(logp (B*nb, V), sequences (B*nb, cur)) -> logp: adjusts each beam's next-token log-probabilities by
    what its sequence holds (penalties.py), as transformers applies its logits processors to beam search's
    log-probabilities.
    Returns (B, P + n): the best hypothesis of each row, rows shorter than the longest ending in fill_id."""
    B, P = prompt.shape
    if max_new_tokens <= 0:
        return prompt
    nb, device = num_beams, prompt.device
    end_ids = torch.tensor(list(more_ends), dtype=torch.long, device=device)
    keep = 2 * nb  # enough candidates that num_beams of them can still run when num_beams just ended
    max_len = P + max_new_tokens
    running = torch.full((B, nb, max_len), fill_id, dtype=torch.long, device=device)
    running[:, :, :P] = prompt[:, None]
    running_scores = torch.zeros(B, nb, device=device)
    running_scores[:, 1:] = _NEG  # all beams start identical: let only the first one expand at step one
    finished = running.clone()
    finished_scores = torch.full((B, nb), _NEG, device=device)
    finished_done = torch.zeros(B, nb, dtype=torch.bool, device=device)
    finished_len = torch.zeros(B, nb, dtype=torch.long, device=device)
    can_improve = torch.ones(B, 1, dtype=torch.bool, device=device)
    rows = torch.arange(B, device=device)[:, None]
    logits, cur = first_logits, P
    while True:
        V = logits.shape[-1]
        logp = torch.log_softmax(logits.float(), dim=-1)
        if penalize is not None:
            logp = penalize(logp, running[:, :, :cur].reshape(B * nb, cur))
        logp = logp.view(B, nb, V) + running_scores[..., None]
        top_scores, top_index = logp.view(B, nb * V).topk(keep, dim=-1)  # (B, keep), best first
        source, token = top_index // V, top_index % V
        candidates = running[rows, source]  # (B, keep, max_len)
        candidates[:, :, cur] = token
        ends = torch.zeros_like(token, dtype=torch.bool) if eos_id is None else token == eos_id
        ends = ends | (cur + 1 >= max_len) | (torch.isin(token, end_ids) if more_ends else False)
        # the best num_beams candidates that do not end keep running
        live_scores = top_scores + ends.float() * _NEG
        live = live_scores.topk(nb, dim=-1).indices  # (B, nb)
        running, running_scores = candidates[rows, live], live_scores.gather(1, live)
        cache_rows = (source.gather(1, live) + rows * nb).flatten()
        # candidates among the first num_beams that end become finished hypotheses if they beat the kept ones
        just_ended = ends & (torch.arange(keep, device=device) < nb)
        scores = top_scores / (cur + 1 - P) ** length_penalty
        scores = scores + (finished_done.all(-1, keepdim=True) & (early_stopping is True)).float() * _NEG
        scores = scores + (~can_improve).float() * _NEG + (~just_ended).float() * _NEG
        merged_scores = torch.cat((finished_scores, scores), dim=1)
        best = merged_scores.topk(nb, dim=-1).indices
        finished = torch.cat((finished, candidates), dim=1)[rows, best]
        finished_scores = merged_scores.gather(1, best)
        finished_done = torch.cat((finished_done, just_ended), dim=1).gather(1, best)
        finished_len = torch.cat((finished_len, torch.full_like(token, cur + 1 - P)), dim=1).gather(1, best)
        cur += 1
        # can a running beam still beat the worst finished hypothesis?
        if early_stopping == "never" and length_penalty > 0:
            best_len = max_len - P
        else:
            best_len = cur - P
        best_possible = running_scores[:, :1] / best_len ** length_penalty
        worst = torch.where(finished_done, finished_scores.min(dim=1, keepdim=True).values, _NEG)
        can_improve = can_improve & (best_possible > worst).any(dim=-1, keepdim=True)
        full = bool(finished_done.all()) and early_stopping is True
        if not bool(can_improve.any()) or full or bool(ends.all()):
            break
        reorder(cache_rows)
        logits = step(running[:, :, cur - 1].flatten())
    out = finished[:, 0, : P + int(finished_len[:, 0].max())]
    return out
