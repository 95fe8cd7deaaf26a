"""A grouped linear projection: the input's channels in g equal groups, each mapped by its own matrix to its share of
the output's (a block-diagonal weight, stored without its zero blocks). SqueezeBERT's grouped 1x1 convolutions
(Iandola et al. 2020, "SqueezeBERT: What can computer vision teach NLP about efficient neural networks?", §3.2:
grouped convolutions from MobileNet/ShuffleNet, which cut a layer's weights and FLOPs g-fold), as `qkv_groups` and
`ffn_groups`. `parts` fused projections of equal width (attention's q, k, v) are grouped each on its own: the weight
is their g-grouped matrices stacked, (parts·out, in / g), as nn.Conv1d(in, out, 1, groups=g) weights concatenated.
Shapes: ... leading dims, i input width, o output width, g groups, p parts."""
from __future__ import annotations

import torch
from torch import nn

from .linear import Linear


class GroupedLinear(nn.Module):
    def __init__(self, dim: int, out: int, groups: int, bias: bool = True, parts: int = 1):
        super().__init__()
        self.groups, self.parts = groups, parts
        self.weight = nn.Parameter(torch.empty(out, dim // groups))  # the parts' rows stacked, each as Conv1d's
        self.bias = nn.Parameter(torch.zeros(out)) if bias else None
        self.in_features, self.out_features = dim, out

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., i) -> (..., p·o)
        g, p = self.groups, self.parts
        w = self.weight.view(p, g, -1, self.in_features // g)  # (p, g, o/g, i/g)
        y = torch.einsum("...gi,pgoi->...pgo", x.unflatten(-1, (g, -1)), w).flatten(-3)
        return y if self.bias is None else y + self.bias


def linear(dim: int, out: int, bias: bool = True, groups: int = 1, parts: int = 1) -> nn.Module:
    """A Linear, or with groups > 1 a GroupedLinear."""
    return Linear(dim, out, bias=bias) if groups == 1 else GroupedLinear(dim, out, groups, bias, parts)
