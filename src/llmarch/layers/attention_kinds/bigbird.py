"""BigBird-ITC attention as transformers runs it at inference (Zaheer et al. 2020, "Big Bird: Transformers for
Longer Sequences", §2 and App. D, the internal-transformer-construction pattern): keys in blocks of b
(attention_block); the first and the last block are global (they see and are seen by every block); every other
query block sees its own block and its two neighbours, the global blocks, and r random blocks (random_blocks).
transformers draws the random blocks only in training: in eval its random adjacency is all zeros, so each of the
r random blocks is block 0 again, and a non-global query block's softmax counts block 0's keys 1 + r times. That
is what this kind computes, in training too: each query block's keys with their multiplicity, as a score bias of
log(multiplicity) (a key listed c times adds c exp(s) v to the softmax's sums). Sequences of at most
(5 + 2r) b tokens use full attention (transformers' `original_full` fallback: too short for the pattern).
Formed as a dense T x T bias (O(T^2) memory, a parity-first form; block_sparse.py is the blockwise, seeded
variant with g leading global blocks and real random blocks). Bidirectional only (an encoder's), no decode state."""
from __future__ import annotations

import math

import torch

from ...errors import LlmarchError
from .kind import ATTENTION_KINDS, AttentionKind


@ATTENTION_KINDS.register("bigbird")
class BigBird(AttentionKind):
    bidirectional_only = True

    def __init__(self, cfg, layer: int):
        super().__init__(cfg, layer)
        if cfg.causal:
            raise LlmarchError("attention='bigbird' is bidirectional (an encoder's): its global blocks see the "
                               "whole sequence")
        self.block, self.rand = cfg.attention_block, cfg.random_blocks

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        if cfg.random_blocks < 0:
            raise LlmarchError(f"random_blocks must be >= 0, got {cfg.random_blocks}")

    def new_state(self, attn, batch: int, max_len: int, dtype: torch.dtype, device):
        raise LlmarchError("attention='bigbird' runs over whole sequences (an encoder's), not a cache")

    def attend(self, attn, x, q, k, v, ctx, dropout_p):  # q, k, v (B, H, T, D)
        T = q.shape[2]
        keys = None if ctx.pad_mask is None else ctx.pad_mask[:, None, None, :T]  # (B, 1, 1, T)
        if T <= (5 + 2 * self.rand) * self.block:  # too short for the pattern: full attention
            mask = keys
        else:
            bias = block_bias(T, self.block, self.rand, q.device).to(q.dtype)[None, None]  # (1, 1, T, T)
            mask = bias if keys is None else bias.masked_fill(~keys, float("-inf"))
        return attn.kernel(q, k, v, mask, False, dropout_p, attn._modules["hook_pattern"], attn.scale)


def block_bias(T: int, b: int, r: int, device) -> torch.Tensor:
    """(T, T) log of how many times query i's softmax counts key j (-inf: not at all), in blocks of b."""
    n = -(-T // b)
    idx = torch.arange(n, device=device)
    count = (((idx[:, None] - idx[None, :]).abs() <= 1) | (idx[None, :] == 0) | (idx[None, :] == n - 1)).float()
    count[1:n - 1, 0] += r  # eval's random blocks: block 0, r more times
    count[0], count[n - 1] = 1.0, 1.0  # the global query blocks see every block once
    bias = torch.where(count > 0, count.log(), -math.inf)
    return bias.repeat_interleave(b, 0).repeat_interleave(b, 1)[:T, :T]
