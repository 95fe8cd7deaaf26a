"""Reversible residual layers (Gomez et al. 2017, "The Reversible Residual Network"; Reformer, Kitaev et al. 2020,
§4), as the forward values of hyper_connection 'reversible': two streams (X1, X2), both the token embedding at
first, and in each block
    Y2 = X2 + Attention(X1),    Y1 = X1 + FeedForward(Y2)
(each sublayer pre-normed by the block's ln1, ln2). One connection serves both sublayers: it hands the sublayer
stream 0 and returns (stream 1 + output, stream 0), so after the two sublayers of a block the streams are (Y1, Y2)
again. The head sets them side by side as transformers does, [Y2; Y1] (hc_side_by_side), for the final norm and the
LM head of 2 * d_model. In training with reversible_backward the stack runs these blocks through
reversible_backward.py instead, which recomputes each block's inputs from its outputs in the backward pass."""
from __future__ import annotations

import torch
from torch import nn

from .hyper import HYPER_CONNECTIONS


class SideBySide(nn.Module):
    """(B, T, n, d) -> (B, T, n * d): the streams, the last first."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flip(2).flatten(2)


@HYPER_CONNECTIONS.register("reversible")
class Reversible(nn.Module):
    norms_input = False

    @staticmethod
    def head(cfg) -> nn.Module:
        return SideBySide()

    def __init__(self, cfg):
        super().__init__()

    def forward(self, x: torch.Tensor):  # x (B, T, 2, d)
        first, second = x.unbind(2)
        return first, lambda y: torch.stack([second + y, first], dim=2)
