"""Greedy decoding of parallel token streams (config codebooks: MusicGen's audio codebooks, layers/codebooks.py):
each step every stream takes its own head's most likely token, all K at once from one forward over the shared
cache. The rows are the model's, (B * K, T), row b * K + k stream k of sequence b. The delay pattern that MusicGen
decodes with (Copet et al. 2023, §2.3: stream k shifted by k steps, tokens before a stream's start held at the pad
code) is the caller's to apply to the prompt and undo afterwards: this decodes the streams as given."""
from __future__ import annotations

import torch

from ..errors import LlmarchError


@torch.no_grad()
def greedy_streams(model, input_ids: torch.Tensor, max_new_tokens: int,
                   attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """input_ids (B * K, T), left-padded with attention_mask (B, T) -> (B * K, T + max_new_tokens): the prompts and
    each stream's greedy continuation."""
    k = model.config.codebooks
    if not k:
        raise LlmarchError(f"{model.config.name} reads one stream of tokens (config codebooks 0): use generate")
    if input_ids.dim() != 2 or input_ids.shape[0] % k or max_new_tokens < 1:
        raise LlmarchError(f"input_ids must be (batch * {k} codebooks, T), got {tuple(input_ids.shape)}; "
                           f"max_new_tokens >= 1, got {max_new_tokens}")
    B, T = input_ids.shape[0] // k, input_ids.shape[1]
    total = T + max_new_tokens
    mask = None if attention_mask is None else torch.cat(
        [attention_mask, attention_mask.new_ones(B, max_new_tokens)], dim=1)  # (B, total)
    out, ids = [input_ids], input_ids
    model.setup_cache(B, total)
    try:
        for t in range(T, total):
            start = t - ids.shape[1]
            logits = model(ids, attention_mask=mask, input_pos=torch.arange(start, t, device=ids.device), kv_len=t,
                           last_only=True).logits  # (B * K, 1, V)
            ids = logits[:, -1:].argmax(-1)  # (B * K, 1)
            out.append(ids)
    finally:
        model.clear_cache()
    return torch.cat(out, dim=1)
