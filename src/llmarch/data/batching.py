"""Texts -> token-id lists for sequence-level tasks (classification, embeddings), and lists of different
lengths -> one padded (B, T) batch with its mask of real tokens. Decoders are padded on the left (every row's
next token lands in the same column); encoders on the right."""
from __future__ import annotations

from typing import Sequence

import torch

from ..errors import LlmarchError

IGNORE = -100  # cross-entropy's ignore_index: a target that is not scored (train.objectives.IGNORE is this one)


def pad(seqs: Sequence[Sequence[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """ids (B, T) and mask (B, T): 1 for real tokens, 0 for padding."""
    if not seqs or any(len(s) == 0 for s in seqs):
        raise LlmarchError("every sequence needs at least one token")
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        cols = slice(T - len(s), T) if left else slice(0, len(s))
        ids[i, cols] = torch.as_tensor(list(s), dtype=torch.long)
        mask[i, cols] = 1
    return ids, mask


CLS_NAMES = ("[CLS]", "<s>")  # BERT's and RoBERTa's first token; our own tokenizers use end-of-text


def first_token(tok) -> int:
    tk = getattr(tok, "tk", None)
    ids = [tk.token_to_id(n) for n in CLS_NAMES] if tk is not None else []
    return next((i for i in ids if i is not None), tok.eos_id)


def encode(tok, texts: list[str], max_length: int) -> list[list[int]]:
    """Each text as [first token] + its tokens, cut to max_length. A tokenizer that adds [CLS] itself (a
    Hugging Face BERT tokenizer.json) is left to do so."""
    cls = first_token(tok)
    out = []
    for ids in tok.encode_batch(texts):
        ids = ids if ids[:1] == [cls] else [cls, *ids]
        out.append(ids[:max_length])
    return out
