"""Declarative weight maps. A Rule pairs one Hugging Face tensor name with one or more of ours
(`{i}` is the layer index) and a layout change; the same rules convert in both directions."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import LlmarchError


@dataclass(frozen=True)
class Rule:
    hf: str
    ours: tuple[str, ...]
    layout: str = "same"  # same | transposed (HF Conv1D stores (in, out)) | fused (q|k|v concatenated) |
    # fused_transposed (both)


def _expand(rules: list[Rule], n_layers: int) -> list[Rule]:
    out = []
    for r in rules:
        layers = range(n_layers) if "{i}" in r.hf else [None]
        for i in layers:
            fmt = (lambda s: s.format(i=i)) if i is not None else (lambda s: s)
            out.append(Rule(fmt(r.hf), tuple(fmt(o) for o in r.ours), r.layout))
    return out


def export_state(ours: dict[str, torch.Tensor], rules: list[Rule], n_layers: int) -> dict[str, torch.Tensor]:
    hf = {}
    for r in _expand(rules, n_layers):
        parts = [ours[name] for name in r.ours]
        if r.layout == "same":
            hf[r.hf] = parts[0]
        elif r.layout == "transposed":
            hf[r.hf] = parts[0].t()
        elif r.layout == "fused":
            hf[r.hf] = torch.cat(parts, dim=0)
        else:  # fused_transposed: rows of q, k, v side by side as Conv1D columns
            hf[r.hf] = torch.cat(parts, dim=0).t()
        hf[r.hf] = hf[r.hf].contiguous()
    return hf


def import_state(hf: dict[str, torch.Tensor], rules: list[Rule], n_layers: int,
                 shapes: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    """HF tensors -> ours; `shapes` (our state dict's shapes) says how fused tensors split."""
    ours = {}
    for r in _expand(rules, n_layers):
        if r.hf not in hf:
            raise LlmarchError(f"checkpoint is missing tensor {r.hf}")
        t = hf[r.hf]
        if r.layout == "same":
            ours[r.ours[0]] = t
        elif r.layout == "transposed":
            ours[r.ours[0]] = t.t().contiguous()
        else:
            sizes = [shapes[name][0] for name in r.ours]
            fused = t.t() if r.layout == "fused_transposed" else t
            for name, piece in zip(r.ours, fused.split(sizes, dim=0)):
                ours[name] = piece.contiguous()
    return ours
