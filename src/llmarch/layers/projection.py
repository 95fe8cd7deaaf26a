"""A projection in place of attention: the block's mixer sublayer is one d x d linear map of each position,
x += norm(x) W, mixing nothing across positions. Puzzle (Bercovich et al. 2024, "Puzzle: Distillation-Based NAS for
Inference-Optimized LLMs", §3.1: the "linear" replacement of an attention block, and the search space of NVIDIA's
Llama-3.x-Nemotron "NAS" models, `replace_with_linear`) distils some attention layers into it: where a layer's
attention barely depends on other tokens, one matrix does the work of q, k, v and o. It reads no earlier token, so
its decode state is empty. Shapes: B batch, T length, C d_model."""
from __future__ import annotations

import torch

from ..errors import LlmarchError
from .linear import Linear
from .mixer import MIXERS, Mixer
from .no_mixer import NoState


@MIXERS.register("projection")
class Projection(Mixer):
    residual_out = ("proj.weight",)

    @classmethod
    def check(cls, cfg) -> None:
        if cfg.block != "sequential":
            raise LlmarchError("mixer 'projection' (one linear map in place of attention) needs a sequential block")

    def __init__(self, cfg, layer: int = 0):
        super().__init__()
        self.proj = Linear(cfg.d_model, cfg.d_model, bias=False)

    def new_state(self, batch: int, max_len: int, dtype: torch.dtype, device) -> NoState:
        return NoState()

    def state_note(self, dtype: str) -> str:
        return ""  # no state: it reads no other position

    def forward(self, x: torch.Tensor, ctx=None) -> torch.Tensor:  # (B, T, C) -> (B, T, C)
        return self.proj(x)
