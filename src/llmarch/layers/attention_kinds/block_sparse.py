"""BigBird's block-sparse attention (Zaheer et al. 2020, §2 and App. D): each block of queries sees itself
and its neighbours, global_blocks global blocks and random_blocks random blocks, drawn once per layer from
attention_seed + layer so the model is deterministic."""
from __future__ import annotations

from ...errors import LlmarchError
from ..sparse_attention import BigBird
from .kind import ATTENTION_KINDS
from .pattern import PatternKind


@ATTENTION_KINDS.register("block_sparse")
class BlockSparse(PatternKind):
    softcaps = False  # its global query blocks take a dense sdpa pass, which cannot cap the scores

    @classmethod
    def check(cls, cfg):
        super().check(cfg)
        if cfg.global_blocks < 0 or cfg.random_blocks < 0:
            raise LlmarchError("global_blocks and random_blocks must be >= 0")

    def make_pattern(self, cfg, layer):
        blocks = -(-cfg.context_length // cfg.attention_block)
        return BigBird(cfg.attention_block, cfg.global_blocks, cfg.random_blocks, blocks,
                       cfg.attention_seed + layer, cfg.causal)
