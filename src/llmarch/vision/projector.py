"""Projectors from the vision tower's features into the text model's width, chosen by VisionConfig.projector."""
from __future__ import annotations

import torch
from torch import nn

from ..layers.ffn import ACTIVATIONS
from ..layers.linear import Linear
from ..layers.norms import LayerNorm
from ..registry import Registry
from .config import VisionConfig

PROJECTORS: Registry = Registry("vision projector")


@PROJECTORS.register("mlp")
class MLPProjector(nn.Module):
    """LLaVA-1.5's two-layer MLP (Liu et al. 2023, "Improved Baselines with Visual Instruction Tuning", §3.2):
    W2 act(W1 f + b1) + b2."""

    def __init__(self, v: VisionConfig, d_model: int):
        super().__init__()
        self.fc1 = Linear(v.feature_width, d_model, bias=v.projector_bias)
        self.act = ACTIVATIONS[v.projector_act]
        self.fc2 = Linear(d_model, d_model, bias=v.projector_bias)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(f)))


@PROJECTORS.register("linear")
class LinearProjector(nn.Module):
    """PaliGemma's one linear map W f + b (Beyer et al. 2024, "PaliGemma", §3.1)."""

    def __init__(self, v: VisionConfig, d_model: int):
        super().__init__()
        self.proj = Linear(v.feature_width, d_model, bias=v.projector_bias)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.proj(f)


@PROJECTORS.register("linear_norm")
class LinearNormProjector(nn.Module):
    """GIT's projection (Wang et al. 2022, §2.1: a linear layer and a LayerNorm): LN(W f + b), the LayerNorm of the
    tower's eps."""

    def __init__(self, v: VisionConfig, d_model: int):
        super().__init__()
        self.proj = Linear(v.feature_width, d_model, bias=v.projector_bias)
        self.norm = LayerNorm(d_model, eps=v.norm_eps)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(f))
