"""What a model's mixture-of-experts layers decided in its last forward pass, and the router losses and
metrics computed from it (layers/router.py). The losses are per stack (an encoder-decoder's encoder and
decoder each have their own, summed, as transformers' Switch does)."""
from __future__ import annotations

import torch

from ..layers.moe import MoE
from ..layers.router import Routing, load_balancing_loss, router_z_loss
from .build import stacks


def moe_layers(stack) -> list[tuple[int, MoE]]:
    """(block index, MoE) of each mixture-of-experts FFN in one stack (a shortcut-connected one included)."""
    return [(i, m) for i, b in enumerate(stack.blocks) for m in (b.mlp, b.moe) if isinstance(m, MoE)]


def routings(model) -> dict[str, list[Routing]]:
    """Stack name ("" for a one-stack model, else "encoder"/"decoder") -> the last Routing of each MoE layer, and of
    each sequence mixer that routes (a mixture of attention heads, layers/moa.py: JetMoE's loss balances both
    kinds of expert together, over the same number of experts)."""
    out = {}
    for name, (stack, _) in stacks(model).items():
        found = [r for b in stack.blocks if (r := getattr(b.seq_mixer, "routing", None)) is not None]
        found += [moe.routing for _, moe in moe_layers(stack) if moe.routing is not None]
        if found:
            out[name] = found
    return out


def router_losses(model, batch_mean=None) -> dict[str, torch.Tensor]:
    """{"aux": load-balancing loss, "z": router z-loss}, each summed over stacks; {} for a dense model.
    batch_mean: see layers/router.load_balancing_loss (data-parallel training). In training this is where
    each batch's routing also moves the experts' balancing bias (update_expert_bias): every process calls
    this once per micro-batch, targets or not, so the collective in batch_mean runs everywhere."""
    found = routings(model)
    if not found:
        return {}
    if model.training:
        update_expert_bias(model, batch_mean)
    scope = model.config.router_aux_scope
    return {"aux": sum(load_balancing_loss(r, scope, batch_mean) for r in found.values()),
            "z": sum(router_z_loss(r) for r in found.values())}


@torch.no_grad()
def update_expert_bias(model, batch_mean=None) -> None:
    """Auxiliary-loss-free balancing (DeepSeek-V3 §2.1.2): after a training batch, each MoE layer with
    expert_bias_update = gamma moves its experts' choice bias by b_e += gamma * sign(mean load - load_e), the
    load being the share of the batch's token-choices each expert got (its last Routing). batch_mean: averages
    the load over data-parallel processes first, so every process moves its copy of the bias alike."""
    for _, moe in _named_moe(model):
        router = moe.router
        if router.bias_update and router.expert_bias is not None and moe.routing is not None:  # hash layers: none
            load = moe.routing.load()
            if batch_mean is not None:
                load = batch_mean(load)
            router.expert_bias += router.bias_update * torch.sign(load.mean() - load).to(router.expert_bias.dtype)


def _named_moe(model) -> list[tuple[str, MoE]]:
    """("{stack.}{i}", MoE) for every MoE layer: "3" in a one-stack model, "encoder.1" in an encoder-decoder."""
    return [(f"{name}.{i}" if name else str(i), moe) for name, (stack, _) in stacks(model).items()
            for i, moe in moe_layers(stack)]


def routing_metric_names(model) -> list[str]:
    cfg = model.config
    kinds = ("load", "dropped") if cfg.capacity_factor or cfg.expert_capacity else ("load",)
    return [f"{kind}.{name}" for name, _ in _named_moe(model) for kind in kinds]


def routing_metrics(model) -> dict[str, float]:
    """Per MoE layer of the last forward: `load.{layer}`, the busiest expert's share of the kept assignments
    over the even share 1/E (1.0 is perfect balance, E is everything on one expert), and `dropped.{layer}`,
    the share of token-choices over capacity."""
    out = {}
    for name, moe in _named_moe(model):
        if moe.routing is not None:
            load = moe.routing.load()
            out[f"load.{name}"] = (load.max() * load.numel()).item()
            if moe.routing.kept is not None or moe.router.capacity(1) is not None:
                out[f"dropped.{name}"] = moe.routing.dropped()
    return out


def expert_loads(model) -> dict[str, dict[str, list[float] | float]]:
    """{"load": {layer: [share of each expert]}, "dropped": {layer: share dropped}} of the last forward."""
    found = [(name, moe.routing) for name, moe in _named_moe(model) if moe.routing is not None]
    return {"load": {name: [round(v, 5) for v in r.load().tolist()] for name, r in found},
            "dropped": {name: round(r.dropped(), 5) for name, r in found}}
