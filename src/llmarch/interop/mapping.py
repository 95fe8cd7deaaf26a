"""Declarative weight maps. A Rule pairs Hugging Face tensor names with one of ours (`{i}` is the layer
index) and a layout; the same rules convert in both directions. Several HF names are concatenated along
dim 0 into one of ours (q, k, v -> qkv_proj; k, v -> kv_proj; gate, up -> gate_up). In an encoder-decoder
`{i}` counts the encoder's blocks in names under `encoder.` and the decoder's under `decoder.`."""
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
    "row": (lambda t, cfg: t.reshape(-1), lambda t, cfg: t[None], lambda s: (1, *s)),  # BART's (1, V) logits bias
}


def fused_sizes(cfg, rule: Rule) -> list[int]:
    """How one of our fused tensors splits into the HF tensors of `rule`: q|k|v rows (layers/attention.py),
    k|v rows (layers/cross_attention.py) or gate|up halves (layers/ffn.py)."""
    kv = cfg.n_kv_heads * cfg.head_dim
    if len(rule.hf) == 3:
        return [cfg.n_heads * cfg.head_dim, kv, kv]
    if ".kv_proj." in rule.ours:
        return [kv, kv]
    return [cfg.ffn_hidden] * len(rule.hf)


def expand(rules: list[Rule], cfg) -> list[Rule]:
    out = []
    for r in rules:
        n_layers = cfg.n_decoder_layers if r.ours.startswith("decoder.") else cfg.n_layers
        for i in (range(n_layers) if "{i}" in r.ours else [None]):
            out.append(Rule(tuple(h.format(i=i) for h in r.hf), r.ours.format(i=i), r.layout))
    return out


def export_state(ours: dict[str, torch.Tensor], rules: list[Rule], cfg) -> dict[str, torch.Tensor]:
    """Ours -> HF for a model with ModelConfig `cfg`; rules for tensors the model lacks are skipped."""
    hf = {}
    for r in expand(rules, cfg):
        if r.ours not in ours:
            continue
        t = ours[r.ours]
        pieces = t.split(fused_sizes(cfg, r), dim=0) if len(r.hf) > 1 else [t]
        for name, piece in zip(r.hf, pieces):
            hf[name] = LAYOUTS[r.layout][1](piece, cfg).contiguous()
    return hf
