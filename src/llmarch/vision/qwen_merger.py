"""Qwen2-VL's PatchMerger (Wang et al. 2024, "Qwen2-VL", \u00a72.1: "an MLP layer compresses adjacent 2 x 2 tokens
into a single token"): each run of merge_size^2 neighbouring patch features (the processor lays each group out
contiguously) normed, concatenated and mapped by fc2(GELU(fc1(.))) into the text model's width. LayerNorm in
Qwen2-VL and Qwen3-VL, RMSNorm in Qwen2.5-VL; Qwen3-VL's DeepStack mergers norm the concatenation instead
(norm_after_merge)."""
from __future__ import annotations

import torch
from torch import nn

from ..layers.ffn import ACTIVATIONS
from ..layers.linear import Linear
from ..layers.norms import NORMS


class PatchMerger(nn.Module):
    def __init__(self, width: int, out_width: int, merge_size: int, norm: str, eps: float,
                 norm_after_merge: bool = False):
        super().__init__()
        self.hidden = width * merge_size ** 2
        self.norm_after_merge = norm_after_merge
        self.norm = NORMS[norm](self.hidden if norm_after_merge else width, eps, True)
        self.fc1 = Linear(self.hidden, self.hidden)
        self.fc2 = Linear(self.hidden, out_width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (P, width) -> (P / merge_size^2, out_width)."""
        x = self.norm(x.reshape(-1, self.hidden)) if self.norm_after_merge else self.norm(x).reshape(-1, self.hidden)
        return self.fc2(ACTIVATIONS["gelu"](self.fc1(x)))
