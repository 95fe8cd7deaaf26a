"""Declarative weight maps. A Rule pairs Hugging Face tensor names with one of ours (`{i}` is the layer
index) and a layout change; the same rules convert in both directions."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import LlmarchError


@dataclass(frozen=True)
class Rule:
    hf: tuple[str, ...]  # several names: concatenated along dim 0 into ours (e.g. q, k, v -> qkv_proj)
    ours: str
    layout: str = "same"  # same | transposed (HF Conv1D stores (in, out))

    @classmethod
    def of(cls, hf: str | tuple[str, ...], ours: str, layout: str = "same") -> "Rule":
        return cls((hf,) if isinstance(hf, str) else hf, ours, layout)


def _expand(rules: list[Rule], n_layers: int) -> list[Rule]:
    out = []
    for r in rules:
        for i in (range(n_layers) if "{i}" in r.ours else [None]):
            out.append(Rule(tuple(h.format(i=i) for h in r.hf), r.ours.format(i=i), r.layout))
    return out


def fused_sizes(cfg, n_parts: int) -> list[int]:
    """How our fused tensors split: 3 parts are q|k|v rows (see layers/attention.py), 2 are gate|up halves."""
    if n_parts == 3:
        return [cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim]
    return [cfg.ffn_hidden] * n_parts


def export_state(ours: dict[str, torch.Tensor], rules: list[Rule], cfg) -> dict[str, torch.Tensor]:
    """Ours -> HF, for a model with ModelConfig `cfg`."""
    hf = {}
    for r in _expand(rules, cfg.n_layers):
        t = ours[r.ours]
        pieces = t.split(fused_sizes(cfg, len(r.hf)), dim=0) if len(r.hf) > 1 else [t]
        if r.layout == "transposed":
            pieces = [p.t() for p in pieces]
        for name, piece in zip(r.hf, pieces):
            hf[name] = piece.contiguous()
    return hf


def import_state(hf: dict[str, torch.Tensor], rules: list[Rule], cfg) -> dict[str, torch.Tensor]:
    """HF -> ours, for a model with ModelConfig `cfg`; names a missing tensor."""
    ours = {}
    for r in _expand(rules, cfg.n_layers):
        for name in r.hf:
            if name not in hf:
                raise LlmarchError(f"checkpoint is missing tensor {name}")
        parts = [hf[name].t() if r.layout == "transposed" else hf[name] for name in r.hf]
        ours[r.ours] = torch.cat(parts, dim=0) if len(parts) > 1 else parts[0].contiguous()
    return ours
