"""Output heads. HeadTransform is BERT's masked-LM head transform (Devlin et al. 2019, appendix A.1 /
the reference code): h -> LayerNorm(act(h W + b)), before the projection onto the vocabulary."""
from __future__ import annotations

import torch
from torch import nn

from .ffn import ACTIVATIONS, FFN_ACTIVATION
from .norms import make_norm


class HeadTransform(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.dense = nn.Linear(cfg.d_model, cfg.d_model)
        self.act = ACTIVATIONS[FFN_ACTIVATION[cfg.ffn]]
        self.norm = make_norm(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.dense(x)))
