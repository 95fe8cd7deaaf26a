"""Bidirectional blocks in a causal stack (config bidirectional_token; Gemma 3's images, whose tokens attend to each
other both ways: Gemma Team 2025, "Gemma 3 Technical Report"): each run of the token in one call is a block whose
tokens see each other's slots, as transformers' token_type_ids blockwise overlay on its causal and sliding masks
does (the overlay joins causality, then the window and padding bar what they bar)."""
from __future__ import annotations

import torch
from torch import nn


def token_blocks(ids: torch.Tensor, token: int) -> torch.Tensor:
    """(B, T) the number of each run of `token` in its row, from 0 (transformers' block_sequence_ids: Gemma 3's
    images), -1 elsewhere."""
    on = ids == token
    starts = on & ~nn.functional.pad(on, (1, 0))[:, :-1]
    return torch.where(on, starts.long().cumsum(-1) - 1, -1)


def same_block(blocks: torch.Tensor, input_pos: torch.Tensor, key_len: int) -> torch.Tensor:
    """bool (B, T, S): this call's query (blocks (B, T), token_blocks') and key slot in one block; the cache's
    earlier slots are in none."""
    at_keys = torch.full((blocks.shape[0], key_len), -1, dtype=blocks.dtype, device=blocks.device)
    at_keys[:, input_pos] = blocks
    return (blocks[:, :, None] == at_keys[:, None, :]) & (blocks[:, :, None] >= 0)
