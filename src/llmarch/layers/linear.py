"""nn.Linear (same parameters, state-dict names, hooks and isinstance) whose forward reads its weight and bias
straight from the parameter dict. nn.Linear's `self.weight` and `self.bias` go through nn.Module's attribute
fallback: 1.2 us of the 5 us a one-row product's call costs (torch 2.13, CPU), paid by every linear layer of
every decoded token (gpt-tiny greedy decoding: 2.4% of its time, docs/benchmarks.md)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Linear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self._parameters
        return F.linear(x, p["weight"], p["bias"])
