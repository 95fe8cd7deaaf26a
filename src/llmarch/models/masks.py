"""Attention masks and position ids for causal stacks, with left padding and a static KV cache."""
from __future__ import annotations

import torch

from ..layers.token_blocks import same_block


def position_ids(input_pos: torch.Tensor, batch: int, pad_mask: torch.Tensor | None) -> torch.Tensor:
    """(B, T) positions of this call's tokens. With left padding a row's first real token is position 0; the
    padding after a row's last real token (right padding) goes on counting, as an encoder's 0..T-1 positions give
    it, which mixers that read padding see (FNet's Fourier transform, Nystromformer's landmarks, ConvBERT's span
    convolutions)."""
    if pad_mask is None:
        return input_pos[None].expand(batch, -1)
    real = pad_mask.long()
    pos = (real.cumsum(-1) - 1).clamp(min=0)
    if input_pos.numel() > 1:  # a decoding step's one token is real: no padding after it to number
        slots = torch.arange(real.shape[1], device=real.device)
        last = (real * slots).amax(-1, keepdim=True)  # (B, 1): the last real slot
        pos = pos + (slots - last).clamp(min=0)
    return pos[:, input_pos]


def causal_mask(input_pos: torch.Tensor, key_len: int, pad_mask: torch.Tensor | None,
                prefix: torch.Tensor | None = None, blocks: torch.Tensor | None = None) -> torch.Tensor:
    """bool (B|1, 1, T, S): query at slot p may attend to key slots <= p that are not padding (sliding windows
    and other patterns: layers/sparse_attention.py). A padded query still sees itself, so no row is fully
    masked (a softmax over nothing is NaN). prefix (B, T): this call's tokens of a prefix-LM's prefix, which also
    see each other's later slots (PaliGemma; transformers' blockwise overlay: causal or same block, then padding);
    blocks (B, T): token_blocks', each block's tokens seeing each other's (Gemma 3's images) in the same way."""
    keys = torch.arange(key_len, device=input_pos.device)
    mask = (input_pos[:, None] >= keys[None, :])[None]  # (1, T, S)
    if prefix is not None:
        prefix = prefix.bool()
        at_keys = torch.zeros(prefix.shape[0], key_len, dtype=torch.bool, device=prefix.device)
        at_keys[:, input_pos] = prefix
        mask = mask | (prefix[:, :, None] & at_keys[:, None, :])  # (B, T, S)
    if blocks is not None:
        mask = mask | same_block(blocks, input_pos, key_len)  # (B, T, S)
    if pad_mask is not None:
        mask = mask & pad_mask[:, None, :].bool()  # (B, T, S)
        mask = mask | (input_pos[:, None] == keys[None, :])
    return mask[:, None]


def document_positions(document_ids: torch.Tensor) -> torch.Tensor:
    """(B, T) position of each token within its document, for rows of packed documents numbered by
    document_ids (B, T): the index minus the index where its document began."""
    T = document_ids.shape[1]
    idx = torch.arange(T, device=document_ids.device).expand_as(document_ids)
    starts = torch.ones_like(document_ids, dtype=torch.bool)
    starts[:, 1:] = document_ids[:, 1:] != document_ids[:, :-1]
    return idx - torch.where(starts, idx, 0).cummax(dim=1).values


def document_mask(document_ids: torch.Tensor) -> torch.Tensor:
    """bool (B, 1, T, T): causal attention within each packed document, none across documents (a block-
    diagonal causal mask, as packing without cross-contamination needs: Krell et al. 2021)."""
    T = document_ids.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=document_ids.device).tril()
    same = document_ids[:, :, None] == document_ids[:, None, :]
    return (causal & same)[:, None]
