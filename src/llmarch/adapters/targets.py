"""Which linear layers an adapter targets, by llmarch's module names, and the output slices of the fused ones.

A pattern names modules as `model.named_modules()` does (`blocks.3.attn.qkv_proj`, `blocks.0.mlp.gate_up`,
`blocks.1.mixer.in_proj`, `lm_head`): it matches a name equal to it, a name it ends (by whole dotted parts:
`qkv_proj`, `attn.o_proj`), or a shell-style glob over the whole name (`blocks.[0-3].*`, `*.mlp.*`). A fused
layer's slices are named after the layer, `qkv_proj.q`, `gate_up.up`, `kv_proj.v`: a pattern naming a slice
adapts that slice alone, one naming the layer adapts all of its slices."""
from __future__ import annotations

from fnmatch import fnmatchcase

from torch import nn

from ..errors import LlmarchError
from .experts import expert_weights
from .quantized import QUANTIZED


def fused_slices(name: str, module: nn.Linear, parent: nn.Module) -> dict[str, tuple[int, int]]:
    """name -> (first row, rows) of each part a fused layer concatenates (layers/attention.py: q|k|v rows, q
    with its output gate's; layers/ffn.py: gate|up halves; layers/cross_attention.py: k|v halves); an unfused
    layer is one slice, "all"."""
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "qkv_proj" and hasattr(parent, "qkv_heads"):
        sizes = dict(zip("qkv", (h * parent.head_dim for h in parent.qkv_heads)))
    elif leaf == "gate_up":
        sizes = {"gate": module.out_features // 2, "up": module.out_features // 2}
    elif leaf == "kv_proj":
        sizes = {"k": module.out_features // 2, "v": module.out_features // 2}
    else:
        return {"all": (0, module.out_features)}
    out, at = {}, 0
    for part, size in sizes.items():
        if size:  # a kind whose keys are its queries (Reformer) has no k rows
            out[part] = (at, size)
        at += size
    return out


def matches(pattern: str, name: str) -> bool:
    return name == pattern or name.endswith("." + pattern) or fnmatchcase(name, pattern)


def linear_layers(model: nn.Module) -> dict[str, tuple[nn.Module, str, nn.Module]]:
    """Every nn.Linear, and every quantized linear (quant/linear.py: QLoRA's targets), by its module name: (its
    parent, its attribute name, the layer)."""
    out = {}
    for parent_name, parent in model.named_modules():
        for attr, child in parent.named_children():
            if isinstance(child, (nn.Linear, *QUANTIZED)):
                out[f"{parent_name}.{attr}" if parent_name else attr] = (parent, attr, child)
    return out


def held(model: nn.Module) -> set[int]:
    """ids of the modules inside a part the model holds and never runs (Block.held_modules: TrOCR's cross-attention,
    Llama 3.2 Vision's skipped cross layers; ImageInputs.held_modules: GIT's tower): an adapter there would train
    nothing, so a pattern that reaches them leaves them out."""
    parts = [h for m in model.modules() if hasattr(m, "held_modules") for h in m.held_modules()]
    return {id(sub) for part in parts for sub in part.modules()}


def select(model: nn.Module, patterns: list[str]) -> tuple[dict[str, dict[str, tuple[int, int]]], list[str]]:
    """(module name -> the slices to adapt, for every linear layer or slice some pattern names, outside the parts
    the model holds and never runs; the stacked expert weights some pattern names, `blocks.1.mlp.experts.gate_up`);
    a pattern that names nothing (or only never-run layers) is an error (it would otherwise train nothing)."""
    chosen: dict[str, dict[str, tuple[int, int]]] = {}
    used, idle, never_run = set(), held(model), set()
    for name, (parent, _, layer) in linear_layers(model).items():
        if id(layer) in idle:
            never_run.update(p for p in patterns if matches(p, name))
            continue
        slices = fused_slices(name, layer, parent)
        stem, _, last = name.rpartition(".")
        stacked = stem if last.isdigit() else None  # expert e of quantized stacked experts (QLoRA): experts.gate_up.e
        for pattern in patterns:
            if matches(pattern, name) or stacked is not None and matches(pattern, stacked):
                chosen.setdefault(name, {}).update(slices)
                used.add(pattern)
                continue
            for part, rows in slices.items():
                if part != "all" and matches(pattern, f"{name}.{part}"):
                    chosen.setdefault(name, {})[part] = rows
                    used.add(pattern)
    experts = []
    for name in expert_weights(model):
        hits = [p for p in patterns if matches(p, name)]
        used.update(hits)
        experts += [name] if hits else []
    unused = [p for p in patterns if p not in used]
    if idle_only := [p for p in unused if p in never_run]:
        raise LlmarchError(f"LoRA target {idle_only[0]!r} matches only layers this model holds for the round trip "
                           "and never runs (an adapter there would train nothing)")
    if unused:
        some = ", ".join(sorted({".".join(n.split(".")[-2:]) if n.split(".")[-1].isdigit() else n.split(".")[-1]
                                 for n in [*linear_layers(model), *expert_weights(model)]}))
        raise LlmarchError(f"LoRA target {unused[0]!r} matches no linear layer of the model (layers: {some})")
    return chosen, experts
