"""Adapters on a built model, applied from outside the model code (transforms.py's order: quantization, then
LoRA, then checkpointing, parallelism, compile): `apply_lora` swaps the targeted nn.Linear layers for
LoRALinear (lora.py) in place, sharing their Parameters, and quantized ones (int4, int8) for their QLoRA
counterparts (quantized.py), sharing their buffers; puts a per-expert LoRA on targeted stacked MoE expert
weights (experts.py), and freezes everything else; `merge` / `unmerge` fold
the adapters into the weights and back (not into quantized weights); `adapters_off` runs the base model (DPO's
reference) without a second copy; `adapter_layout` / `apply_layout` record and rebuild where the adapters sit
(a QLoRA checkpoint's adapters.json); `peft.py` reads and writes PEFT's adapter files."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..errors import LlmarchError
from .experts import attach, expert_sites, expert_weights
from .lora import LoRALinear, LoRAUpdates
from .quantized import LoRAQuantized
from .targets import linear_layers, select

__all__ = ["LoRAConfig", "LoRALinear", "adapter_layout", "adapter_state", "adapters", "adapters_off", "apply_layout",
           "apply_lora", "lora_layers", "merge", "merged_state", "remove_lora", "unmerge"]

LAYOUT_FILE = "adapters.json"  # beside a quantized checkpoint whose adapters stay unmerged (adapter_layout)
DEFAULT_TARGETS = ("qkv_proj", "o_proj")  # the attention projections, as Hu et al. §7.1 found enough


@dataclass
class LoRAConfig:
    rank: int = 8
    alpha: float = 16.0  # s = alpha / rank (alpha / sqrt(rank) with rslora)
    dropout: float = 0.0  # on the adapters' input
    targets: tuple[str, ...] = DEFAULT_TARGETS  # patterns over module names (targets.py)
    rslora: bool = False  # s = alpha / sqrt(rank) (Kalajdzievski 2023)
    dora: bool = False  # weight-decomposed (Liu et al. 2024)

    def validate(self) -> None:
        if self.rank <= 0:
            raise LlmarchError(f"LoRA rank must be positive, got {self.rank}")
        if not 0 <= self.dropout < 1:
            raise LlmarchError(f"LoRA dropout must be in [0, 1), got {self.dropout}")
        if not self.targets:
            raise LlmarchError("LoRA needs at least one target pattern")

    def to_dict(self) -> dict:
        return {**asdict(self), "targets": list(self.targets)}


def lora_layers(model: nn.Module) -> dict[str, LoRAUpdates]:
    """The adapted linear layers by name: LoRALinear, and LoRA over quantized weights (quantized.py)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRAUpdates)}


def adapters(model: nn.Module) -> dict:
    """Every adapter by the name of what it adapts: LoRALinear layers and adapted stacked expert weights
    (experts.py's ExpertSite), each with merge(), unmerge(), merged_weight(), `merged` and `enabled`."""
    return {**lora_layers(model), **expert_sites(model)}


def apply_lora(model: nn.Module, config: LoRAConfig | None = None,
               slices: dict[str, dict[str, tuple[int, int]]] | None = None,
               per_slice: dict[str, dict[str, tuple[int, float]]] | None = None,
               stacked: dict[str, tuple[int, float]] | None = None) -> nn.Module:
    """Adapters on the layers `config.targets` names (or exactly `slices`: module name -> adapted slices, as
    a PEFT adapter file gives them, with per_slice: module name -> slice -> (rank, alpha) where they differ
    from the config's, and stacked: stacked expert weight name -> (rank, alpha)); every other parameter frozen.
    A rank above a slice's width is refused (it adds parameters and no rank). In place; returns the model."""
    config = config or LoRAConfig()
    config.validate()
    if adapters(model):
        raise LlmarchError("the model already has LoRA adapters")
    chosen, experts = select(model, list(config.targets)) if slices is None else (slices, list(stacked or {}))
    if experts and config.dora:
        raise LlmarchError(f"DoRA on stacked expert weights ({experts[0]}) is not supported; target the "
                           "attention or dense layers, or drop --lora-dora")
    layers, weights = linear_layers(model), expert_weights(model)
    quantized = [name for name in chosen if not isinstance(layers[name][2], nn.Linear)]
    if quantized and config.dora:
        raise LlmarchError(f"DoRA over quantized weights ({quantized[0]}) is not supported; drop --lora-dora")
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    for p in model.parameters():
        p.requires_grad_(False)
    for name, parts in chosen.items():
        parent, attr, layer = layers[name]
        options = (per_slice or {}).get(name, {})
        for part, (_, size) in parts.items():
            rank = options.get(part, (config.rank,))[0]
            _check_rank(rank, layer.in_features, size, name + ("" if part == "all" else "." + part))
        args = (layer, parts, config.rank, config.alpha, config.dropout, config.rslora)
        setattr(parent, attr, LoRAQuantized.wrap(*args, per_slice=options, dtype=dtype) if name in quantized
                else LoRALinear.wrap(*args, config.dora, options))
    for name in experts:  # the adapters' input dropout does not apply here: the update is to the weight
        module, attr = weights[name]
        _, out, inp = getattr(module, attr).shape
        rank, alpha = (stacked or {}).get(name, (config.rank, config.alpha))
        _check_rank(rank, inp, out, name)
        attach(module, attr, rank, alpha, config.rslora)
    model.lora_config = config
    return model


def _check_rank(rank: int, inp: int, out: int, name: str) -> None:
    if rank > min(inp, out):
        raise LlmarchError(f"LoRA rank {rank} exceeds the width of {name} ({inp} -> {out})")


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapters' tensors by their names in the model (`blocks.0.attn.qkv_proj.lora_A.q`, ...)."""
    return {k: v.detach() for k, v in model.state_dict().items() if ".lora_" in k}


def check_foldable(model: nn.Module) -> None:
    """Refuse adapters that no checkpoint can fold in: one on a weight tied to another module (a tied LM head and
    the embedding), which training checks before its first step rather than at its first checkpoint."""
    shared = _shared_weights(model)
    for name, layer in lora_layers(model).items():  # a quantized base (QLoRA) has codes, shared with nothing
        if id(getattr(layer, "weight", None)) in shared and not layer.merged:
            raise LlmarchError(f"cannot fold the adapter of {name} into its weight: the weight is tied to another "
                               "module (the embedding); leave it out of --lora-targets")


def merged_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict as the plain model would have it: each adapted weight with its adapters folded
    in, under its own name, no adapter tensors; the model itself unchanged (what a checkpoint of a LoRA run
    stores, so that `generate` and `--to-hf` read it as any other)."""
    state = {k: v for k, v in model.state_dict().items() if ".lora_" not in k and ".parametrizations." not in k}
    _refuse_quantized(model, "fold the adapter of {} into its quantized weight (a QLoRA checkpoint keeps it "
                             "unmerged)")
    check_foldable(model)
    for name, layer in lora_layers(model).items():
        state[f"{name}.weight"] = layer.merged_weight()
    for name, site in expert_sites(model).items():
        state[name] = site.merged_weight()
    return state


def _refuse_quantized(model: nn.Module, what: str) -> None:
    """QLoRA's adapters are never merged (quantized.py says why)."""
    for name, layer in lora_layers(model).items():
        if isinstance(layer, LoRAQuantized):
            raise LlmarchError("cannot " + what.format(name))


def _shared_weights(model: nn.Module) -> set[int]:
    seen, shared = set(), set()
    for _, p in model.named_parameters(remove_duplicate=False):
        (shared if id(p) in seen else seen).add(id(p))
    return shared


def merge(model: nn.Module) -> nn.Module:
    """Fold every adapter into its weight (W += s B A): inference at the base model's cost. A weight shared
    with another module (a tied LM head is the embedding) is refused: merging would change both."""
    _refuse_quantized(model, "merge the adapter of {} into its quantized weight: re-quantizing W + sBA would "
                             "round away every change smaller than half a quantization step; keep it unmerged")
    shared = _shared_weights(model)
    for name, layer in lora_layers(model).items():
        if id(layer.weight) in shared:
            raise LlmarchError(f"cannot merge the adapter of {name}: its weight is tied to another module")
    for layer in adapters(model).values():
        layer.merge()
    return model


def unmerge(model: nn.Module) -> nn.Module:
    for layer in adapters(model).values():
        layer.unmerge()
    return model


def remove_lora(model: nn.Module) -> nn.Module:
    """Plain nn.Linear layers again (merged adapters stay in the weights, unmerged ones are dropped); every
    parameter trainable again."""
    layers = linear_layers(model)
    for name, layer in lora_layers(model).items():
        parent, attr, _ = layers[name]
        setattr(parent, attr, layer.unwrap())
    for site in expert_sites(model).values():
        site.remove()
    for p in model.parameters():
        p.requires_grad_(True)
    model.__dict__.pop("lora_config", None)
    return model


@contextmanager
def adapters_off(model: nn.Module):
    """The base model for the duration: DPO's reference policy with no second copy of the weights."""
    layers = list(adapters(model).values())
    if any(layer.merged for layer in layers):
        raise LlmarchError("adapters_off needs unmerged adapters (unmerge first)")
    for layer in layers:
        layer.enabled = False
    try:
        yield model
    finally:
        for layer in layers:
            layer.enabled = True


def adapter_layout(model: nn.Module) -> dict:
    """Where the model's adapters sit, as JSON: the LoRA config and, per adapted layer, its slices with their
    rows, rank and alpha (what `apply_layout` needs to rebuild them on the same base before their tensors are
    loaded; a QLoRA checkpoint's adapters.json)."""
    if expert_sites(model):
        raise LlmarchError("the layout of adapters on stacked expert weights is not recorded; merge them instead")
    config: LoRAConfig = model.lora_config
    layers = {}
    for name, layer in lora_layers(model).items():
        layers[name] = {p: {"rows": list(rows), "rank": layer.ranks[p], "alpha": layer.alphas[p]}
                        for p, rows in layer.slices.items()}
    return {"config": config.to_dict(), "layers": layers}


def apply_layout(model: nn.Module, layout: dict) -> nn.Module:
    """Adapters where `layout` (adapter_layout's) puts them, initialised as apply_lora does (B = 0); their
    trained values come with the checkpoint's tensors. In place; returns the model."""
    try:
        config = LoRAConfig(**{**layout["config"], "targets": tuple(layout["config"]["targets"])})
        slices = {name: {p: tuple(s["rows"]) for p, s in parts.items()} for name, parts in layout["layers"].items()}
        options = {name: {p: (int(s["rank"]), float(s["alpha"])) for p, s in parts.items()}
                   for name, parts in layout["layers"].items()}
    except (KeyError, TypeError, ValueError) as e:
        raise LlmarchError(f"malformed adapter layout ({type(e).__name__}: {e})") from None
    missing = sorted(set(slices) - set(linear_layers(model)))
    if missing:
        raise LlmarchError(f"the adapter layout names {missing[0]}, which the model does not have")
    return apply_lora(model, config, slices=slices, per_slice=options)
