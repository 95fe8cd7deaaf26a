"""Position-wise feed-forward networks: MLP (Vaswani et al. 2017, eq. 2) and gated GLU variants
(Shazeer 2020, "GLU Variants Improve Transformer": SwiGLU and GeGLU, eqs. 5-6), and gpt-oss's clamped
SwiGLU. A gated kind is its gate function (gate, up) -> hidden, which the experts of moe.py share."""
from __future__ import annotations

from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LlmarchError
from ..registry import Registry
from .linear import Linear

FFNS: Registry = Registry("ffn")

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "gelu_tanh": partial(F.gelu, approximate="tanh"),  # GPT-2's "gelu_new"
    "relu": F.relu,
    "silu": F.silu,
    "relu2": lambda x: F.relu(x).square(),  # squared ReLU (So et al. 2021, "Primer", §3.2): Arcee, Nemotron
}


class MLP(nn.Module):
    """FFN(x) = act(x W_up + b) W_down + b."""

    residual_out = ("down.weight",)  # writes to the residual stream (GPT-2 scaled init, models/stack.py)

    def __init__(self, dim: int, hidden: int, act: str, bias: bool):
        super().__init__()
        self.act = ACTIVATIONS[act]
        self.up = Linear(dim, hidden, bias=bias)
        self.down = Linear(hidden, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sub = self._modules  # not nn.Module's attribute fallback, at every layer of every decoded token
        return sub["down"](self.act(sub["up"](x)))


def act_gate(gate: torch.Tensor, up: torch.Tensor, act: Callable) -> torch.Tensor:
    """act(x W_gate) * x W_up (Shazeer 2020, eqs. 5-6)."""
    return act(gate) * up


def clamped_swiglu(gate: torch.Tensor, up: torch.Tensor, alpha: float, limit: float) -> torch.Tensor:
    """gpt-oss's SwiGLU (OpenAI 2025, gpt-oss model card §2.1): the gate clamped from above and the up
    projection on both sides at `limit`, a sigmoid of gain alpha (x * sigmoid(1.702 x) is the sigmoid
    approximation of GELU, Hendrycks & Gimpel 2016), and 1 added to the up projection:
    (clamp(up, -limit, limit) + 1) * g * sigmoid(alpha * g), g = min(gate, limit)."""
    gate = gate.clamp(max=limit)
    return (up.clamp(-limit, limit) + 1) * gate * torch.sigmoid(alpha * gate)


class GLU(nn.Module):
    """FFN(x) = gate(x W_gate, x W_up) W_down: act(x W_gate) * x W_up, act = SiLU giving SwiGLU, GELU GeGLU, or
    gpt-oss's clamped SwiGLU. W_gate and W_up are one fused matmul, `gate_up` (rows: gate, then up)."""

    residual_out = ("down.weight",)

    def __init__(self, dim: int, hidden: int, bias: bool, gate: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
        super().__init__()
        self.gate = gate
        self.gate_up = Linear(dim, 2 * hidden, bias=bias)
        self.down = Linear(hidden, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sub = self._modules
        gate, up = sub["gate_up"](x).chunk(2, dim=-1)
        return sub["down"](self.gate(gate, up))


# the gated kinds: name -> (the config fields it reads, as keywords) -> its gate function (gate, up) -> hidden
GATES: dict[str, Callable[..., Callable]] = {
    "swiglu": lambda: partial(act_gate, act=ACTIVATIONS["silu"]),
    "geglu": lambda: partial(act_gate, act=ACTIVATIONS["gelu"]),
    "geglu_tanh": lambda: partial(act_gate, act=ACTIVATIONS["gelu_tanh"]),
    "swiglu_clamped": lambda swiglu_alpha=1.702, swiglu_limit=7.0: partial(clamped_swiglu, alpha=swiglu_alpha,
                                                                            limit=swiglu_limit),
}
GATED = tuple(GATES)
FFN_FIELDS = {"swiglu_clamped": ("swiglu_alpha", "swiglu_limit")}  # the config fields a kind reads
FFN_ACTIVATION: dict[str, str] = {"swiglu": "silu", "geglu": "gelu", "geglu_tanh": "gelu_tanh",
                                  "swiglu_clamped": "silu"}  # ffn name -> its activation's name
for _name in ("gelu", "gelu_tanh", "relu", "relu2", "silu"):
    FFNS.register(_name)(partial(MLP, act=_name))
    FFN_ACTIVATION[_name] = _name


def _glu(dim: int, hidden: int, bias: bool, kind: str, **options) -> GLU:
    return GLU(dim, hidden, bias, GATES[kind](**options))


for _name in GATES:
    FFNS.register(_name)(partial(_glu, kind=_name))


def ffn_options(cfg) -> dict:
    """The config fields the configured FFN kind reads, as keyword arguments of its constructor."""
    return {name: getattr(cfg, name) for name in FFN_FIELDS.get(cfg.ffn, ())}


def gate_function(cfg) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The configured gated kind's (gate, up) -> hidden, for stacked experts (moe.py)."""
    return GATES[cfg.ffn](**ffn_options(cfg))


def dense_ffn(cfg, hidden: int) -> nn.Module | None:
    """An FFN of the configured kind and this hidden width."""
    return FFNS[cfg.ffn](cfg.d_model, hidden, bias=cfg.bias, **ffn_options(cfg))


def check_ffn(cfg) -> None:
    if cfg.swiglu_limit <= 0 or cfg.swiglu_alpha <= 0:
        raise LlmarchError(f"swiglu_limit and swiglu_alpha must be positive, got {cfg.swiglu_limit} and "
                           f"{cfg.swiglu_alpha}")


FFNS.register("none")(lambda dim, hidden, bias: None)  # no FFN: the block is its mixer alone (Mamba)
