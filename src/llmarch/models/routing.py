"""What a model's mixture-of-experts layers decided in its last forward pass, and the router losses and
metrics computed from it (layers/router.py). The losses are per stack (an encoder-decoder's encoder and
decoder each have their own, summed, as transformers' Switch does)."""
from __future__ import annotations

import torch

from ..layers.moe import MoE
from ..layers.router import Routing, load_balancing_loss, router_z_loss


def moe_layers(stack) -> list[tuple[int, MoE]]:
    """(block index, MoE) of each mixture-of-experts FFN in one stack."""
    return [(i, b.mlp) for i, b in enumerate(stack.blocks) if isinstance(b.mlp, MoE)]


def routings(model) -> dict[str, list[Routing]]:
    """Stack name ("" for a one-stack model, else "encoder"/"decoder") -> the last Routing of each MoE layer."""
    stacks = {"encoder": model.encoder, "decoder": model.decoder} if model.config.is_encoder_decoder else {"": model}
    out = {}
    for name, stack in stacks.items():
        found = [moe.routing for _, moe in moe_layers(stack) if moe.routing is not None]
        if found:
            out[name] = found
    return out


def router_losses(model) -> dict[str, torch.Tensor]:
    """{"aux": load-balancing loss, "z": router z-loss}, each summed over stacks; {} for a dense model."""
    found = routings(model)
    if not found:
        return {}
    scope = model.config.router_aux_scope
    return {"aux": sum(load_balancing_loss(r, scope) for r in found.values()),
            "z": sum(router_z_loss(r) for r in found.values())}


def routing_metrics(model) -> dict[str, float]:
    """Per MoE layer: `load.{stack}{i}` (the largest expert's share of the assignments over the even share
    1/E: 1.0 is perfect balance) and `dropped.{stack}{i}` (share of token-choices over capacity)."""
    stacks = {"encoder": model.encoder, "decoder": model.decoder} if model.config.is_encoder_decoder else {"": model}
    out = {}
    for name, stack in stacks.items():
        prefix = f"{name}." if name else ""
        for i, moe in moe_layers(stack):
            if moe.routing is None:
                continue
            load = moe.routing.load()
            out[f"load.{prefix}{i}"] = (load.max() * load.numel()).item()
            out[f"dropped.{prefix}{i}"] = moe.routing.dropped()
    return out
