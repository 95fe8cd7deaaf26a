"""A linear map without bias whose input and output are clamped to stored bounds (Gemma 4's use_clipped_linears, its
vision and audio towers': transformers' Gemma4ClippableLinear, bounds kept from quantization-aware training). The four
bounds are scalar buffers, +-inf (no clamp) until a checkpoint gives them; without clipping there are none, so the
state dict holds the weight alone."""
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

