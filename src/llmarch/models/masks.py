"""Attention masks and position ids for causal stacks, with left padding and a static KV cache."""
from __future__ import annotations

import torch


def position_ids(input_pos: torch.Tensor, batch: int, pad_mask: torch.Tensor | None) -> torch.Tensor:
    """(B, T) positions of this call's tokens. With left padding a row's first real token is position 0."""
    if pad_mask is None:
        return input_pos[None].expand(batch, -1)
    return (pad_mask.long().cumsum(-1) - 1).clamp(min=0)[:, input_pos]


def causal_mask(input_pos: torch.Tensor, key_len: int, pad_mask: torch.Tensor | None) -> torch.Tensor:
    """bool (B|1, 1, T, S): query at slot p may attend to key slots <= p that are not padding (sliding windows
    and other patterns: layers/sparse_attention.py). A padded query still sees itself, so no row is fully
    masked (a softmax over nothing is NaN)."""
    keys = torch.arange(key_len, device=input_pos.device)
    mask = input_pos[:, None] >= keys[None, :]  # (T, S)
    if pad_mask is not None:
        mask = mask[None] & pad_mask[:, None, :].bool()  # (B, T, S)
        mask = mask | (input_pos[:, None] == keys[None, :])
    else:
        mask = mask[None]
    return mask[:, None]
