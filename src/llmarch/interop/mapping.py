"""Declarative weight maps. A Rule pairs Hugging Face tensor names with one of ours (`{i}` is the layer
index) and a layout; the same rules convert in both directions. Several HF names are concatenated along
dim 0 into one of ours (q, k, v -> qkv_proj; gate, up -> gate_up)."""
from __future__ import annotations

from dataclasses import dataclass

import torch



@dataclass(frozen=True)
class Rule:
    hf: tuple[str, ...]
    ours: str
    layout: str = "same"  # a key of LAYOUTS

    @classmethod
    def of(cls, hf: str | tuple[str, ...], ours: str, layout: str = "same") -> "Rule":
        return cls((hf,) if isinstance(hf, str) else hf, ours, layout)


def _neox_qkv(t: torch.Tensor, cfg, to_ours: bool) -> torch.Tensor:
    """GPT-NeoX fuses q, k, v per head: rows [h0: q k v, h1: q k v, ...]; ours are [q (all heads), k, v]."""
    H, D = cfg.n_heads, cfg.head_dim
    rest = t.shape[1:]
    if to_ours:
        return t.reshape(H, 3, D, *rest).transpose(0, 1).reshape(3 * H * D, *rest)
    return t.reshape(3, H, D, *rest).transpose(0, 1).reshape(3 * H * D, *rest)


# layout: (HF tensor -> our tensor, our tensor -> HF tensor, our shape -> HF shape)
LAYOUTS = {
    "same": (lambda t, cfg: t, lambda t, cfg: t, lambda s: s),
    "transposed": (lambda t, cfg: t.t(), lambda t, cfg: t.t(), lambda s: s[::-1]),  # HF Conv1D stores (in, out)
    "neox_qkv": (lambda t, cfg: _neox_qkv(t, cfg, True), lambda t, cfg: _neox_qkv(t, cfg, False), lambda s: s),
}


def fused_sizes(cfg, n_parts: int) -> list[int]:
    """How our fused tensors split: 3 parts are q|k|v rows (see layers/attention.py), 2 are gate|up halves."""
    if n_parts == 3:
        return [cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim]
    return [cfg.ffn_hidden] * n_parts


def expand(rules: list[Rule], n_layers: int) -> list[Rule]:
    out = []
    for r in rules:
        for i in (range(n_layers) if "{i}" in r.ours else [None]):
            out.append(Rule(tuple(h.format(i=i) for h in r.hf), r.ours.format(i=i), r.layout))
    return out


def export_state(ours: dict[str, torch.Tensor], rules: list[Rule], cfg) -> dict[str, torch.Tensor]:
    """Ours -> HF for a model with ModelConfig `cfg`; rules for tensors the model lacks are skipped."""
    hf = {}
    for r in expand(rules, cfg.n_layers):
        if r.ours not in ours:
            continue
        t = ours[r.ours]
        pieces = t.split(fused_sizes(cfg, len(r.hf)), dim=0) if len(r.hf) > 1 else [t]
        for name, piece in zip(r.hf, pieces):
            hf[name] = LAYOUTS[r.layout][1](piece, cfg).contiguous()
    return hf
