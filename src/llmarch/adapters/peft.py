"""PEFT's adapter files in and out: `adapter_config.json` and `adapter_model.safetensors` with the names the
`peft` library gives a LoRA on the Hugging Face model (`base_model.model.<HF module>.lora_A.weight`, `lora_B.weight`,
`lora_magnitude_vector` for DoRA). Module names translate through the family's weight map (interop/): a rule
joining q_proj, k_proj and v_proj into our qkv_proj makes PEFT's q_proj adapter our qkv_proj's slice "q"
(targets.py), and an adapter on gate_proj alone is the "gate" slice of gate_up. Only layers stored as they are
("same" layout) translate: GPT-2's transposed Conv1D and GPT-NeoX's per-head q|k|v interleaving do not.
Adapters on stacked expert weights are PEFT's `target_parameters` (peft_experts.py)."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import LlmarchError, first_and_count
from ..interop.hf import FAMILIES
from ..interop.mapping import expand
from . import LoRAConfig, apply_lora, lora_layers
from .experts import expert_sites
from .peft_experts import expert_tensors, take_experts
from .targets import fused_slices, linear_layers

CONFIG, WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
PREFIX = "base_model.model."
# PEFT's tensor suffixes; base_layer: the base weight itself, which PEFT stores for an adapted LM head
SUFFIXES = {".lora_A.weight": "A", ".lora_B.weight": "B", ".lora_magnitude_vector": "magnitude",
            ".base_layer.weight": "base"}


def module_map(model: nn.Module) -> dict[str, tuple[str, str]]:
    """HF module name -> (our module name, slice), for every linear layer the family's rules map."""
    cfg = model.config
    if cfg.hf_model_type is None:
        raise LlmarchError("the model's config has no hf_model_type, so PEFT has no module names for it")
    layers = linear_layers(model)
    out = {}
    for rule in expand(FAMILIES[cfg.hf_model_type].rules_for(cfg), cfg):
        ours = rule.ours.removesuffix(".weight")
        if not rule.ours.endswith(".weight") or ours not in layers or rule.layout != "same":
            continue
        parent, _, layer = layers[ours]
        slices = sorted(fused_slices(ours, layer, parent).items(), key=lambda item: item[1][0])
        if len(slices) != len(rule.hf):
            continue
        for hf, (part, _) in zip(rule.hf, slices):
            out[hf.removesuffix(".weight")] = (ours, part)
    return out


def save_peft(model: nn.Module, path: str | Path, base: str | None = None) -> None:
    """The model's LoRA adapters as a PEFT adapter directory; base: the base model's name or path, recorded as
    base_model_name_or_path."""
    layers = lora_layers(model)
    tensors, stacked = expert_tensors(model, PREFIX)
    if not layers and not stacked:
        raise LlmarchError("the model has no LoRA adapters to save")
    if any(layer.merged for layer in [*layers.values(), *stacked.values()]):
        raise LlmarchError("the adapters are merged into the weights; unmerge before saving them")
    back = {ours: hf for hf, ours in module_map(model).items()} if layers else {}
    config: LoRAConfig = model.lora_config
    targets, ranks, alphas = [], {}, {}
    for hf, lora in stacked.items():
        if lora.rank != config.rank:
            ranks[hf] = lora.rank
        if not math.isclose(lora.alpha, config.alpha):
            alphas[hf] = lora.alpha
    for name, layer in layers.items():
        for part in layer.slices:
            if (name, part) not in back:
                raise LlmarchError(f"model_type {model.config.hf_model_type} has no PEFT name for {name} "
                                   f"(slice {part})")
            hf = back[name, part]
            targets.append(hf)
            rank = layer.ranks[part]
            alpha = layer.alphas[part]
            if rank != config.rank:
                ranks[hf] = rank
            if not math.isclose(alpha, config.alpha):
                alphas[hf] = alpha
            tensors[f"{PREFIX}{hf}.lora_A.weight"] = layer.lora_A[part].detach().contiguous().cpu()
            tensors[f"{PREFIX}{hf}.lora_B.weight"] = layer.lora_B[part].detach().contiguous().cpu()
            if layer.lora_magnitude is not None:
                tensors[f"{PREFIX}{hf}.lora_magnitude_vector"] = layer.lora_magnitude[part].detach().cpu()
    # PEFT's ParamWrapper refuses dropout (it would act on the input, and the update is to the weight: ours on
    # experts have none either), so a file with expert adapters records none; it mattered only in training
    meta = dict(peft_type="LORA", task_type="CAUSAL_LM", base_model_name_or_path=base, r=config.rank,
                lora_alpha=config.alpha, lora_dropout=0.0 if stacked else config.dropout, use_rslora=config.rslora,
                use_dora=config.dora, target_modules=sorted(targets), target_parameters=sorted(stacked) or None,
                bias="none", fan_in_fan_out=False, inference_mode=True, init_lora_weights=True, modules_to_save=None,
                rank_pattern=ranks, alpha_pattern=alphas)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / WEIGHTS), metadata={"format": "pt"})
    (path / CONFIG).write_text(json.dumps(meta, indent=2) + "\n")


def _read(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    try:
        meta = json.loads((path / CONFIG).read_text())
        tensors = load_file(str(path / WEIGHTS))
    except OSError as e:
        raise LlmarchError(f"{path} is not a PEFT adapter directory ({e.strerror}: {Path(e.filename).name})") from None
    except (json.JSONDecodeError, SafetensorError, ValueError) as e:
        raise LlmarchError(f"cannot read the adapter in {path}: {str(e).splitlines()[0]}") from None
    if meta.get("peft_type") != "LORA":
        raise LlmarchError(f"{path}: peft_type {meta.get('peft_type')!r} is not supported (LORA is)")
    for key, ok in (("modules_to_save", None), ("bias", "none"),
                    ("fan_in_fan_out", False), ("lora_bias", False), ("layers_pattern", None)):
        if meta.get(key, ok) not in (ok, [], None):
            raise LlmarchError(f"{path}: {key}={meta[key]!r} is not supported")
    return meta, tensors


def _rank_and_alpha(meta: dict, name: str, rank: int, alpha: float) -> tuple[int, float]:
    """A module's rank and alpha under PEFT's rank_pattern and alpha_pattern, looked up as PEFT does
    (peft.utils.other.get_pattern_key): the first key of either, in that order, that as a regex matches the end
    of the module name at a dot boundary; its rank and alpha where the patterns give them, else the defaults."""
    ranks, alphas = meta.get("rank_pattern") or {}, meta.get("alpha_pattern") or {}
    key = next((k for k in [*ranks, *alphas] if re.match(rf"(.*\.)?({k})$", name)), None)
    return int(ranks.get(key, rank)), float(alphas.get(key, alpha))


def load_peft(model: nn.Module, path: str | Path) -> nn.Module:
    """A PEFT LoRA adapter directory applied to `model` (which it must fit: the same architecture and shapes),
    unmerged; every other parameter frozen. In place; returns the model."""
    path = Path(path)
    meta, tensors = _read(path)
    names = module_map(model)
    found: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in tensors.items():
        key = key.removeprefix(PREFIX)
        for suffix, kind in SUFFIXES.items():
            if key.endswith(suffix):
                found.setdefault(key.removesuffix(suffix), {})[kind] = t
                break
        else:
            raise LlmarchError(f"{path}: unexpected tensor {key}")
    config = LoRAConfig(rank=int(meta["r"]), alpha=float(meta.get("lora_alpha", 8)),
                        dropout=float(meta.get("lora_dropout", 0.0)), rslora=bool(meta.get("use_rslora")),
                        dora=bool(meta.get("use_dora")), targets=tuple(sorted(found)))
    stacked = take_experts(model, meta, found, path, lambda hf: _rank_and_alpha(meta, hf, config.rank, config.alpha))
    unknown = sorted(set(found) - set(names))
    if unknown:
        cfg = model.config
        mapped = {h.removesuffix(".weight") for r in expand(FAMILIES[cfg.hf_model_type].rules_for(cfg), cfg)
                  for h in r.hf}
        if all(u in mapped for u in unknown):  # the model's own layers, which llmarch holds fused or reordered
            raise LlmarchError(f"{path} adapts {first_and_count(unknown)}, a layer this model has but llmarch holds "
                               "fused with others or its rows reordered, so an adapter on it is not read")
        raise LlmarchError(f"{path} adapts {first_and_count(unknown)}, which this model does not have "
                           "(an adapter for another base?)")
    layers = linear_layers(model)
    slices: dict[str, dict[str, tuple[int, int]]] = {}
    options: dict[str, dict[str, tuple[int, float]]] = {}
    for hf in found:
        ours, part = names[hf]
        parent, _, layer = layers[ours]
        slices.setdefault(ours, {})[part] = fused_slices(ours, layer, parent)[part]
        options.setdefault(ours, {})[part] = _rank_and_alpha(meta, hf, config.rank, config.alpha)
    apply_lora(model, config, slices=slices, per_slice=options,
               stacked={name: (rank, alpha) for name, (_, _, rank, alpha) in stacked.items()})
    adapted, sites = lora_layers(model), expert_sites(model)
    with torch.no_grad():
        for name, (A, B, _, _) in stacked.items():
            sites[name].lora.lora_A.copy_(A)
            sites[name].lora.lora_B.copy_(B)
        for hf, parts in found.items():
            ours, part = names[hf]
            layer = adapted[ours]
            pairs = [("A", layer.lora_A[part]), ("B", layer.lora_B[part])]
            if config.dora:
                pairs.append(("magnitude", layer.lora_magnitude[part]))
            for kind, param in pairs:
                if kind not in parts:
                    raise LlmarchError(f"{path} lacks lora_{kind} of {hf}")
                if tuple(parts[kind].shape) != tuple(param.shape):
                    raise LlmarchError(f"{path}: lora_{kind} of {hf} has shape {tuple(parts[kind].shape)}, the "
                                       f"model expects {tuple(param.shape)} (an adapter for another base?)")
                param.copy_(parts[kind])
    return model
