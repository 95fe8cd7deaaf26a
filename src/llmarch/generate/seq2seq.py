"""Generation for encoder-decoders: encode the sources once, project each decoder block's cross-attention
keys/values from that output once, then decode from config.decoder_start_id one token at a time over the
decoder's KV cache: greedy, sampled, or beam search (beam.py)."""
from __future__ import annotations

from typing import Callable

import torch

from ..data.batching import pad
from ..errors import LlmarchError
from .beam import beam_search
from .sampling import sample


class DecoderSteps:
    """One decoder position per call, for `rows` = batch x beams rows, each reading its source's memory."""

    def __init__(self, model, memory: torch.Tensor, source_mask: torch.Tensor | None, total: int):
        self.model, self.source_mask, self.n = model, source_mask, 0
        self.slots = torch.arange(total, device=memory.device)  # step n reads slots[n : n + 1]: a view, no allocation
        model.setup_cache(memory.shape[0], total, memory=memory)

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        pos = self.slots[self.n:self.n + 1]
        self.n += 1
        return self.model.decode(tokens[:, None], None, self.source_mask, input_pos=pos, kv_len=self.n).logits[:, -1]


@torch.inference_mode()
def generate_seq2seq(model, input_ids, max_new_tokens: int, temperature: float = 0.0, top_k: int | None = None,
                     top_p: float | None = None, eos_id: int | None = None,
                     attention_mask: torch.Tensor | None = None, seed: int | None = None,
                     on_tokens: Callable[[torch.Tensor], None] | None = None, num_beams: int = 1,
                     length_penalty: float = 1.0, early_stopping: bool | str = False):
    """input_ids: sources, a (B, S) tensor (right-padded, with attention_mask) or a list of token-id lists.
    Returns, for a tensor, the (B, 1 + n) decoder sequences starting with decoder_start_id (rows that ended
    hold pad_id after eos); for lists, each row's generated ids up to and including eos."""
    cfg = model.config
    eos_id = cfg.eos_id if eos_id is None else eos_id
    as_lists = not isinstance(input_ids, torch.Tensor)
    if as_lists:
        if not input_ids or any(len(p) == 0 for p in input_ids):
            raise LlmarchError("every source needs at least one token")
        input_ids, attention_mask = pad(input_ids, cfg.pad_id, left=False)
    device = next(model.parameters()).device
    input_ids = input_ids.to(device)
    source_mask = None if attention_mask is None or bool(attention_mask.all()) else attention_mask.to(device)
    B = input_ids.shape[0]
    max_new_tokens = min(max_new_tokens, cfg.context_length - 1)  # the start token takes one decoder position
    was_training = model.training
    model.eval()
    try:
        memory = model.encode(input_ids, source_mask)
        start = torch.full((B, 1), cfg.decoder_start_id, dtype=torch.long, device=device)
        if num_beams > 1:
            memory = memory.repeat_interleave(num_beams, dim=0)
            mask = None if source_mask is None else source_mask.repeat_interleave(num_beams, dim=0)
            steps = DecoderSteps(model, memory, mask, 1 + max_new_tokens)
            first = steps(start.repeat_interleave(num_beams, dim=0)[:, 0])
            out = beam_search(first, steps, model.reorder_cache, start, num_beams, max_new_tokens, eos_id,
                              cfg.pad_id, length_penalty, early_stopping)
        else:
            out = _sample_loop(DecoderSteps(model, memory, source_mask, 1 + max_new_tokens), start, max_new_tokens,
                               temperature, top_k, top_p, eos_id, cfg.pad_id, seed, on_tokens)
    finally:
        model.clear_cache()
        model.train(was_training)
    if not as_lists:
        return out
    rows = []
    for row in out[:, 1:].tolist():
        rows.append(row[: row.index(eos_id) + 1] if eos_id is not None and eos_id in row else row)
    return rows


def _sample_loop(steps: DecoderSteps, start: torch.Tensor, max_new_tokens: int, temperature: float, top_k, top_p,
                 eos_id: int | None, pad_id: int, seed: int | None, on_tokens) -> torch.Tensor:
    B, device = start.shape[0], start.device
    generator = None if seed is None else torch.Generator(device=device).manual_seed(seed)
    out = torch.full((B, 1 + max_new_tokens), pad_id, dtype=torch.long, device=device)
    out[:, 0] = start[:, 0]
    done = torch.zeros(B, dtype=torch.bool, device=device)
    n = 0
    if max_new_tokens:
        logits = steps(start[:, 0])
    for i in range(max_new_tokens):
        tok = sample(logits, temperature, top_k, top_p, generator).masked_fill(done, pad_id)
        out[:, 1 + i] = tok
        n = i + 1
        if eos_id is not None:
            done |= tok == eos_id
        if on_tokens is not None:
            on_tokens(tok)
        if i + 1 == max_new_tokens or bool(done.all()):
            break
        logits = steps(tok)
    return out[:, : 1 + n]


def check_beam_args(num_beams: int, temperature: float, length_penalty: float, early_stopping) -> None:
    if num_beams < 1:
        raise LlmarchError(f"num_beams must be >= 1, got {num_beams}")
    if num_beams > 1 and temperature > 0:
        raise LlmarchError("beam search is deterministic: use num_beams > 1 with temperature 0")
    if early_stopping not in (True, False, "never"):
        raise LlmarchError(f"early_stopping must be true, false or never, got {early_stopping!r}")

