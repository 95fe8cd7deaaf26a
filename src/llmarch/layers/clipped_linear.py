"""A linear map whose input and output are clamped to bounds stored with its weight (Gemma 3n's and Gemma 4's
"clippable" linears, use_clipped_linears: the ranges the quantisation-aware training saw, so an outlier cannot leave
them; transformers' Gemma4ClippableLinear): y = clamp(W clamp(x, in_min, in_max), out_min, out_max), no bias. The
four bounds are scalar buffers, +-inf until a checkpoint fills them; without `clipped` it is a plain linear map."""
from __future__ import annotations

import torch
from .linear import Linear

BOUNDS = ("input_min", "input_max", "output_min", "output_max")


class ClippedLinear(Linear):
    def __init__(self, d_in: int, d_out: int, clipped: bool):
        super().__init__(d_in, d_out, bias=False)
        self.clipped = clipped
        if clipped:
            for name in BOUNDS:
                self.register_buffer(name, torch.tensor(float("inf") if name.endswith("max") else -float("inf")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.clipped:
            return super().forward(x)
        b = self._buffers
        return torch.clamp(super().forward(torch.clamp(x, b["input_min"], b["input_max"])), b["output_min"],
                           b["output_max"])


def clamp_abs(x: torch.Tensor, bound: float) -> torch.Tensor:
    """x clamped to +-bound (bound past the dtype's range: its largest value, as transformers takes the min)."""
    bound = min(bound, torch.finfo(x.dtype).max)
    return torch.clamp(x, -bound, bound)

