"""PEFT's adapter tensors for LoRA on stacked expert weights (experts.py), as `peft` writes them for
`LoraConfig(target_parameters=["mlp.experts.gate_up_proj", "mlp.experts.down_proj"])` on a transformers MoE model
whose experts are stacked Parameters (E, out, in) (interop/hf.py Family.stacked_experts).

peft/tuners/lora/layer.py ParamWrapper: for a 3-D Parameter stored (E, out, in) it swaps the shape's last two
sizes into (in, out) features and keeps one nn.Linear pair for all experts, lora_A (E r, in) with expert-major
rows and lora_B (out, r E) with rank-major columns: get_delta_weight reshapes A to (E, r, in) and B to
(out, r, E), delta_e = s B[:, :, e] A_e, the same W_e + s B_e A_e as ours. Each targeted Parameter of one module
gets its own ParamWrapper, each wrapping the last in the order the module defines its Parameters, so the last
one's tensors sit at `<module>.lora_A.weight` and every earlier one's one `base_layer.` deeper."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..errors import LlmarchError, first_and_count
from ..interop.hf import FAMILIES
from ..interop.mapping import expand
from .experts import ExpertLoRA, expert_sites, expert_weights


def stacked_map(model: nn.Module) -> dict[str, str]:
    """transformers' name of each stacked expert Parameter the model has (`model.layers.0.mlp.experts.gate_up_proj`)
    -> ours (`blocks.0.mlp.experts.gate_up`)."""
    cfg, weights = model.config, expert_weights(model)
    return {r.hf[0]: r.ours for r in expand(FAMILIES[cfg.hf_model_type].stacked_experts, cfg) if r.ours in weights}


def module_keys(model: nn.Module, params: list[str]) -> dict[str, str]:
    """The module name under which PEFT stores each targeted Parameter's lora_A and lora_B (the nesting above)."""
    order = [r.hf[0].rpartition(".")[2] for r in FAMILIES[model.config.hf_model_type].stacked_experts]
    by_module: dict[str, list[str]] = {}
    for p in sorted(params, key=lambda p: order.index(p.rpartition(".")[2])):
        by_module.setdefault(p.rpartition(".")[0], []).append(p)
    return {p: module + ".base_layer" * depth
            for module, ps in by_module.items() for depth, p in enumerate(reversed(ps))}


def to_peft(lora: ExpertLoRA) -> tuple[torch.Tensor, torch.Tensor]:
    """Our A (E, r, in), B (E, out, r) as ParamWrapper's lora_A.weight (E r, in), lora_B.weight (out, r E)."""
    E, out, r = lora.lora_B.shape
    return (lora.lora_A.detach().reshape(E * r, -1).contiguous(),
            lora.lora_B.detach().permute(1, 2, 0).reshape(out, r * E).contiguous())


def expert_tensors(model: nn.Module, prefix: str) -> tuple[dict[str, torch.Tensor], dict[str, ExpertLoRA]]:
    """The model's expert adapters as PEFT's tensors (under `prefix`), and each adapter by its transformers
    Parameter name (target_parameters)."""
    sites = expert_sites(model)
    if not sites:
        return {}, {}
    back = {ours: hf for hf, ours in stacked_map(model).items()}
    missing = [name for name in sites if name not in back]
    if missing:
        raise LlmarchError(f"model_type {model.config.hf_model_type} has no PEFT name for the stacked expert weight "
                           f"{first_and_count(missing)}")
    loras = {back[name]: site.lora for name, site in sites.items()}
    tensors = {}
    for hf, key in module_keys(model, list(loras)).items():
        a, b = to_peft(loras[hf])
        tensors[f"{prefix}{key}.lora_A.weight"], tensors[f"{prefix}{key}.lora_B.weight"] = a.cpu(), b.cpu()
    return tensors, loras


def take_experts(model: nn.Module, meta: dict, found: dict[str, dict[str, torch.Tensor]], path,
                 rank_and_alpha: Callable[[str], tuple[int, float]]) -> dict[str, tuple]:
    """The expert adapters of a PEFT file whose `target_parameters` name them: our stacked weight name -> (A (E, r,
    in), B (E, out, r), rank, alpha); their tensors are taken out of `found` (module name -> kind -> tensor).
    rank_and_alpha: a Parameter's rank and alpha under the file's patterns."""
    wanted = meta.get("target_parameters") or []
    names = stacked_map(model)
    targeted = [hf for hf in names if any(hf == t or hf.endswith("." + t) for t in wanted)]
    unmatched = [t for t in wanted if not any(hf == t or hf.endswith("." + t) for hf in names)]
    if unmatched:
        raise LlmarchError(f"{path}: target_parameters {first_and_count(unmatched)} names no stacked expert weight "
                           f"of this model (an adapter for another base?)")
    weights, out = expert_weights(model), {}
    for hf, key in module_keys(model, targeted).items():
        parts = found.pop(key, {})
        module, attr = weights[names[hf]]
        E, rows, cols = getattr(module, attr).shape
        rank, alpha = rank_and_alpha(hf)
        for kind, shape in (("A", (E * rank, cols)), ("B", (rows, rank * E))):
            if kind not in parts:
                raise LlmarchError(f"{path} lacks lora_{kind} of {hf}")
            if tuple(parts[kind].shape) != shape:
                raise LlmarchError(f"{path}: lora_{kind} of {hf} has shape {tuple(parts[kind].shape)}, the model "
                                   f"expects {shape} (an adapter for another base?)")
        A, B = parts["A"], parts["B"]
        out[names[hf]] = (A.reshape(E, rank, cols), B.reshape(rows, rank, E).permute(2, 0, 1), rank, alpha)
    return out
