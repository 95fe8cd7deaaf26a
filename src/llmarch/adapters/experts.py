"""LoRA on a mixture-of-experts layer's stacked expert weights (layers/moe.py: gate_up or up (E, rows, C), down
(E, C, I)), one low-rank update per expert: W_e + s B_e A_e, A (E, r, in), B (E, out, r), B = 0 at the start.
The experts' matmuls read those Parameters in several ways (grouped GEMM, a loop over experts, gathered weights
for compiled decoding), so the update is applied to the weight itself, as a registered parametrization
(torch.nn.utils.parametrize): every path sees W + s B A with no change to the MoE code, at the cost of forming
the (E, out, in) sum at each forward (what PEFT's target_parameters does for such weights too). The base
weight's state-dict name becomes `<experts>.parametrizations.<name>.original` while the adapter is on;
merged_state (adapters/__init__.py) writes it back under its own name."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..layers.moe import Experts
from ..quant.experts import QuantExperts


class ExpertLoRA(nn.Module):
    """The parametrization W -> W + s B A over stacked experts (E, out, in)."""

    def __init__(self, weight: torch.Tensor, rank: int, alpha: float, rslora: bool = False):
        super().__init__()
        E, out, inp = weight.shape
        self.rank, self.alpha = rank, alpha
        self.scaling = alpha / math.sqrt(rank) if rslora else alpha / rank
        self.lora_A = nn.Parameter(torch.empty(E, rank, inp, device=weight.device, dtype=weight.dtype))
        self.lora_B = nn.Parameter(torch.zeros(E, out, rank, device=weight.device, dtype=weight.dtype))
        bound = 1 / math.sqrt(inp)  # kaiming_uniform(a=sqrt(5)) per expert, as nn.Linear and PEFT initialise A
        nn.init.uniform_(self.lora_A, -bound, bound)
        self.merged, self.enabled = False, True
        self.before_merge: torch.Tensor | None = None  # W while merged, for an exact unmerge

    def delta(self) -> torch.Tensor:
        return self.scaling * (self.lora_B @ self.lora_A)  # (E, out, in)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.merged or not self.enabled:
            return weight
        return weight + self.delta().to(weight.dtype)


def attach(module: nn.Module, name: str, rank: int, alpha: float, rslora: bool) -> None:
    """LoRA on the stacked weight `name` of an Experts module."""
    lora = ExpertLoRA(getattr(module, name), rank, alpha, rslora)
    parametrize.register_parametrization(module, name, lora, unsafe=True)


class ExpertSite:
    """One adapted stacked weight (an Experts module and the Parameter's name); merge and unmerge act on the
    stored (original) weight, as LoRALinear's act on theirs."""

    def __init__(self, module: nn.Module, name: str):
        self.module, self.name = module, name
        self.lora: ExpertLoRA = module.parametrizations[name][0]

    @property
    def original(self) -> nn.Parameter:
        return self.module.parametrizations[self.name].original

    @property
    def merged(self) -> bool:
        return self.lora.merged

    @property
    def enabled(self) -> bool:
        return self.lora.enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self.lora.enabled = value

    @torch.no_grad()
    def merge(self) -> None:
        """The stored weight becomes W + s B A; W is kept (a copy), so unmerge restores it bit for bit."""
        if not self.lora.merged:
            self.lora.before_merge = self.original.detach().clone()
            self.original.add_(self.lora.delta().to(self.original.dtype))
            self.lora.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.lora.merged:
            self.original.copy_(self.lora.before_merge)
            self.lora.before_merge = None
            self.lora.merged = False

    @torch.no_grad()
    def merged_weight(self) -> torch.Tensor:
        return self.original.clone() if self.merged else self.original + self.lora.delta().to(self.original.dtype)

    def remove(self) -> None:
        """The plain Parameter again: with the update if merged, without it otherwise."""
        parametrize.remove_parametrizations(self.module, self.name, leave_parametrized=self.merged)


def expert_weights(model: nn.Module) -> dict[str, tuple[nn.Module, str]]:
    """Stacked expert weights by name (`blocks.1.mlp.experts.gate_up`, `...experts.down`): the 3-D Parameters
    of the MoE layers' Experts modules (quantized experts are per-expert linear layers instead, targets of their
    own: `experts.gate_up.0`)."""
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, Experts) and not isinstance(module, QuantExperts):
            for attr in (module.in_name, "down"):
                out[f"{name}.{attr}"] = (module, attr)
    return out


def expert_sites(model: nn.Module) -> dict[str, ExpertSite]:
    """The adapted stacked weights by name."""
    return {name: ExpertSite(module, attr) for name, (module, attr) in expert_weights(model).items()
            if parametrize.is_parametrized(module, attr)
            and isinstance(module.parametrizations[attr][0], ExpertLoRA)}
