"""LongT5's transient global tokens (Guo et al. 2022, "LongT5", §3.1.2): the input is cut into fixed blocks of
global_block_size tokens, and each block's summary (the sum of its tokens' inputs) is one global token that every
token may attend to. Shared by the transient_global attention kind (the summaries) and the T5 relative bias (a
bias per head and bucket of the offset global block - the token's block). As transformers (after Flaxformer)
numbers them: block b holds the real tokens at slots [b·g, (b+1)·g), the tokens of a trailing partial block join the
last full block, padding is block -1; a row has S // g global slots, those past its last block are unused."""
from __future__ import annotations

import torch


def fixed_blocks(pad_mask: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """pad_mask (B, S) bool, True at real tokens -> (block id of each token (B, S), -1 at padding; used (B, G):
    whether global slot j holds a block of the row), G = S // block."""
    S = pad_mask.shape[1]
    slots = torch.arange(S, device=pad_mask.device)
    ids = torch.where(pad_mask, slots // block, -1)  # (B, S)
    full = (pad_mask & (slots % block == block - 1)).sum(-1, keepdim=True) - 1  # (B, 1): the last full block
    ids = torch.minimum(ids, full)  # a trailing partial block joins the last full one (-1 where there is none)
    used = torch.arange(S // block, device=pad_mask.device)[None] <= ids.amax(-1, keepdim=True)  # (B, G)
    return ids, used


def block_sums(x: torch.Tensor, ids: torch.Tensor, n_globals: int) -> torch.Tensor:
    """x (B, S, C), ids (B, S) -> (B, G, C): the sum of each block's tokens (padding, id -1, in none)."""
    one_hot = torch.nn.functional.one_hot((ids % (n_globals + 1)).long(), n_globals + 1)[..., :n_globals]
    return torch.einsum("bsc,bsg->bgc", x, one_hot.to(x.dtype))
