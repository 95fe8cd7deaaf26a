"""ESM-2's token dropout (Lin et al. 2023, "Evolutionary-scale prediction of atomic-level protein structure with a
language model", supplementary A.2.1; fair-esm's `token_dropout`): masked positions' embeddings are zeroed rather
than replaced by a learned [MASK] vector, and each row's embeddings are rescaled by (1 - 0.15 · 0.8) / (1 - m), m
the row's observed share of mask tokens among its real tokens, so their expected sum matches training, where
15% of tokens are chosen and 80% of those masked. Applied to the token embeddings before positions are added, in
training and inference alike, as ESM and transformers' EsmEmbeddings do."""
from __future__ import annotations

import torch

MASK_RATIO_TRAIN = 0.15 * 0.8  # hard-coded in every ESM training run (transformers' mask_ratio_train)


def drop_mask_tokens(x: torch.Tensor, input_ids: torch.Tensor, pad_mask: torch.Tensor | None,
                     mask_id: int) -> torch.Tensor:
    """x (B, T, C) token embeddings of input_ids (B, T); pad_mask (B, T) bool, the real tokens (None: all)."""
    masked = input_ids == mask_id  # (B, T)
    x = x.masked_fill(masked[..., None], 0.0)
    lengths = pad_mask[:, :input_ids.shape[1]].sum(-1) if pad_mask is not None else input_ids.shape[1]
    observed = masked.sum(-1).float() / lengths  # (B,)
    return (x * (1 - MASK_RATIO_TRAIN) / (1 - observed)[:, None, None]).to(x.dtype)
