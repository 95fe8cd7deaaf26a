"""Position-wise feed-forward networks: MLP (Vaswani et al. 2017, eq. 2) and gated GLU variants
(Shazeer 2020, "GLU Variants Improve Transformer": SwiGLU and GeGLU, eqs. 5-6)."""
from __future__ import annotations

from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry

FFNS: Registry = Registry("ffn")

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "gelu_tanh": partial(F.gelu, approximate="tanh"),  # GPT-2's "gelu_new"
    "relu": F.relu,
    "silu": F.silu,
}


class MLP(nn.Module):
    """FFN(x) = act(x W_up + b) W_down + b."""

    residual_out = ("down.weight",)  # writes to the residual stream (GPT-2 scaled init, models/stack.py)

    def __init__(self, dim: int, hidden: int, act: str, bias: bool):
        super().__init__()
        self.act = ACTIVATIONS[act]
        self.up = nn.Linear(dim, hidden, bias=bias)
        self.down = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.up(x)))


class GLU(nn.Module):
    """FFN(x) = (act(x W_gate) * x W_up) W_down; act = SiLU gives SwiGLU, GELU gives GeGLU.
    W_gate and W_up are one fused matmul, `gate_up` (rows: gate, then up)."""

    residual_out = ("down.weight",)

    def __init__(self, dim: int, hidden: int, act: str, bias: bool):
        super().__init__()
        self.act = ACTIVATIONS[act]
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=bias)
        self.down = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(self.act(gate) * up)


FFN_ACTIVATION: dict[str, str] = {}  # ffn name -> its activation's name
GATED = ("swiglu", "geglu", "geglu_tanh")
for _name, _cls, _act in [("gelu", MLP, "gelu"), ("gelu_tanh", MLP, "gelu_tanh"), ("relu", MLP, "relu"),
                          ("silu", MLP, "silu"),
                          ("swiglu", GLU, "silu"), ("geglu", GLU, "gelu"), ("geglu_tanh", GLU, "gelu_tanh")]:
    FFNS.register(_name)(partial(_cls, act=_act))
    FFN_ACTIVATION[_name] = _act


FFNS.register("none")(lambda dim, hidden, bias: None)  # no FFN: the block is its mixer alone (Mamba)
