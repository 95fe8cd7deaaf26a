"""The Sparse Transformer's "fixed" strided pattern (Child et al. 2019, §4.2): a query sees its own block of
l = attention_block positions and the last c = strided_summary positions of every block."""
from __future__ import annotations

from ...errors import LlmarchError
from ..sparse_attention import FixedStrided
from .kind import ATTENTION_KINDS
from .pattern import PatternKind


@ATTENTION_KINDS.register("strided")
class Strided(PatternKind):
    takes_sinks = True

    @classmethod
    def check(cls, cfg):
        super().check(cfg)
        if not 0 < cfg.strided_summary <= cfg.attention_block:
            raise LlmarchError(f"strided_summary must be in [1, attention_block={cfg.attention_block}], "
                               f"got {cfg.strided_summary}")

    def make_pattern(self, cfg, layer):
        return FixedStrided(cfg.attention_block, cfg.strided_summary)
