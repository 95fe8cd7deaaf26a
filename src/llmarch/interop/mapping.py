"""Declarative weight maps. A Rule pairs Hugging Face tensor names with one of ours (`{i}` is the layer
index) and a layout; the same rules convert in both directions. Several HF names are concatenated along
dim 0 into one of ours (q, k, v -> qkv_proj; k, v -> kv_proj; gate, up -> gate_up). In an encoder-decoder
`{i}` counts the encoder's blocks in names under `encoder.` and the decoder's under `decoder.`. `{e}` in the
HF names counts experts: expert e's tensors (fused as above) are row e of our stacked (E, ...) tensor; `{g}` counts
expert groups the same way (moe_adjugate_group: GroveMoE's adjugate experts, one a group)."""
from __future__ import annotations

from dataclasses import dataclass

import torch



@dataclass(frozen=True)
class Rule:
    hf: tuple[str, ...]
    ours: str
    # a key of LAYOUTS, or one per HF name where the pieces of a fused tensor differ (interleaved RoPE: the q and k
    # rows reordered, v's not)
    layout: str | tuple[str, ...] = "same"
    experts: int = 0  # once expanded: the experts stacked along dim 0 of ours (hf lists each expert's names)
    layer: int | None = None  # the block the rule's tensor belongs to, once expanded (whose heads size its pieces)

    @classmethod
    def of(cls, hf: str | tuple[str, ...], ours: str, layout: str | tuple[str, ...] = "same") -> "Rule":
        return cls((hf,) if isinstance(hf, str) else hf, ours, layout)

    def layouts(self) -> tuple[str, ...]:
        """The layout of each HF name, in order."""
        if self.layout in JOINS or self.layout in SPLITS:
            raise ValueError(f"rule {self.ours}: layout {self.layout!r} joins its tensors as a whole")
        if isinstance(self.layout, str):
            return (self.layout,) * len(self.hf)
        return self.layout * (len(self.hf) // len(self.layout))  # an expert's layouts, once per expert


def _neox_qkv(t: torch.Tensor, cfg, to_ours: bool) -> torch.Tensor:
    """GPT-NeoX fuses q, k, v per head: rows [h0: q k v, h1: q k v, ...]; ours are [q (all heads), k, v]."""
    H, D = cfg.n_heads, cfg.head_dim
    rest = t.shape[1:]
    if to_ours:
        return t.reshape(H, 3, D, *rest).transpose(0, 1).reshape(3 * H * D, *rest)
    return t.reshape(3, H, D, *rest).transpose(0, 1).reshape(3 * H * D, *rest)


def _grouped_qkv(t: torch.Tensor, cfg, to_ours: bool) -> torch.Tensor:
    """Falcon fuses q, k, v per group of G = H / K query heads sharing a kv head: rows [g0: q_0..q_{G-1} k v,
    g1: ...]; ours are [q (all heads), k (all kv heads), v]. One group (K = 1) is Falcon-7B's multi-query
    layout, H groups its per-head q k v (transformers' FalconAttention._split_heads)."""
    K, D = cfg.n_kv_heads, cfg.head_dim
    G = cfg.n_heads // K
    rest = t.shape[1:]
    if to_ours:
        g = t.reshape(K, G + 2, D, *rest)
        return torch.cat([g[:, :G].flatten(0, 2), g[:, G].flatten(0, 1), g[:, G + 1].flatten(0, 1)])
    q, k, v = t.split([K * G * D, K * D, K * D])
    parts = [q.reshape(K, G, D, *rest), k.reshape(K, 1, D, *rest), v.reshape(K, 1, D, *rest)]
    return torch.cat(parts, dim=1).flatten(0, 2)


def _deinterleave(t: torch.Tensor) -> torch.Tensor:
    """gpt-oss interleaves gate and up along dim 1 (g0 u0 g1 u1 ...); ours are all gates, then all ups."""
    return torch.cat([t[:, 0::2], t[:, 1::2]], dim=1)


def _interleave(t: torch.Tensor) -> torch.Tensor:
    gate, up = t.chunk(2, dim=1)
    return torch.stack([gate, up], dim=2).flatten(1, 2)


def _rope_pairs(t: torch.Tensor, cfg, to_ours: bool) -> torch.Tensor:
    """Query or key rows (heads x head_dim, ...) whose rotated dims turn in adjacent pairs (2j, 2j + 1), as GLM,
    Cohere and ERNIE 4.5 rotate them (transformers' rotate_half over interleaved dims), reordered per head to
    ours, which rotate dim j with dim j + R/2 (LLaMA's halves): the same rotation of the same pairs, so scores
    are unchanged. Only the R = rotary_dim rotated dims move; the rest of each head stays (partial rotary)."""
    D, R = cfg.head_dim, cfg.rotary_dim
    order = torch.cat((torch.arange(0, R, 2), torch.arange(1, R, 2), torch.arange(R, D)))
    order = order if to_ours else order.argsort()
    heads = t.reshape(-1, D, *t.shape[1:])
    return heads[:, order].reshape(t.shape)


def _rope_pairs_qkv(t: torch.Tensor, cfg, to_ours: bool) -> torch.Tensor:
    """A fused q|k|v tensor (rows: heads x head_dim of q, then of k, then of v; Ergo's wqkv) whose q and k rows RoPE
    turns in adjacent pairs: those reordered per head as _rope_pairs does, v's rows as they are."""
    q, k = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    q, k, v = t.split([q, k, t.shape[0] - q - k])
    return torch.cat([_rope_pairs(q, cfg, to_ours), _rope_pairs(k, cfg, to_ours), v])


def _rope_negated(t: torch.Tensor, cfg) -> torch.Tensor:
    """Query or key rows (heads x head_dim, ...) that RoPE turns by -theta (nanochat's rotate_half, cat(x2, -x1)):
    the two halves of each head's rotated dims swapped. Turning (a, b) by -theta is turning (b, a) by +theta with
    the result swapped back, and q.k is unchanged by one permutation of both, so ours turn the swapped rows by
    +theta (LLaMA's halves). Its own inverse; a norm over each head after RoPE (nanochat's QK-norm, gainless)
    commutes with it."""
    D, R = cfg.head_dim, cfg.rotary_dim
    order = torch.cat((torch.arange(R // 2, R), torch.arange(0, R // 2), torch.arange(R, D)))
    return t.reshape(-1, D, *t.shape[1:])[:, order].reshape(t.shape)


def _rkvwg(t: torch.Tensor, dim: int) -> torch.Tensor:
    """t's five blocks along `dim` with the first and the fourth swapped (r k v w g <-> w k v r g)."""
    blocks = list(t.chunk(5, dim=dim))
    return torch.cat([blocks[3], blocks[1], blocks[2], blocks[0], blocks[4]], dim=dim)


def _swap12(s: tuple) -> tuple:
    return (s[0], s[2], s[1], *s[3:])


# layout: (HF tensor -> our tensor, our tensor -> HF tensor, our shape -> HF shape)
LAYOUTS = {
    "same": (lambda t, cfg: t, lambda t, cfg: t, lambda s: s),
    "transposed": (lambda t, cfg: t.t(), lambda t, cfg: t.t(), lambda s: s[::-1]),  # HF Conv1D stores (in, out)
    "neox_qkv": (lambda t, cfg: _neox_qkv(t, cfg, True), lambda t, cfg: _neox_qkv(t, cfg, False), lambda s: s),
    "grouped_qkv": (lambda t, cfg: _grouped_qkv(t, cfg, True), lambda t, cfg: _grouped_qkv(t, cfg, False),
                    lambda s: s),
    "row": (lambda t, cfg: t.reshape(-1), lambda t, cfg: t[None], lambda s: (1, *s)),  # BART's (1, V) logits bias
    # a leading batch dim of 1 stored (InternViT's position_embeddings (1, P, C), its cls_token (1, 1, C))
    "batch1": (lambda t, cfg: t[0], lambda t, cfg: t[None], lambda s: (1, *s)),
    "batch1_row": (lambda t, cfg: t.reshape(-1), lambda t, cfg: t[None, None], lambda s: (1, 1, *s)),
    # stacked experts stored (E, in, out) (gpt-oss's down_proj); ours are (E, out, in) as nn.Linear's
    "experts_transposed": (lambda t, cfg: t.transpose(1, 2), lambda t, cfg: t.transpose(1, 2), _swap12),
    # gpt-oss's gate_up_proj (E, C, 2I), gate and up interleaved along the last dim; ours (E, 2I, C), gates first
    "experts_interleaved": (lambda t, cfg: _deinterleave(t.transpose(1, 2)),
                            lambda t, cfg: _interleave(t).transpose(1, 2), _swap12),
    # its gate_up_proj_bias (E, 2I), interleaved the same way
    "interleaved": (lambda t, cfg: _deinterleave(t), lambda t, cfg: _interleave(t), lambda s: s),
    # q or k rows whose RoPE turns adjacent dims (GLM, Cohere, ERNIE 4.5); v's rows go as "same"
    "rope_pairs": (lambda t, cfg: _rope_pairs(t, cfg, True), lambda t, cfg: _rope_pairs(t, cfg, False), lambda s: s),
    # q|k|v fused into one stored tensor, q and k rows turning adjacent dims (Ergo's wqkv)
    "rope_pairs_qkv": (lambda t, cfg: _rope_pairs_qkv(t, cfg, True), lambda t, cfg: _rope_pairs_qkv(t, cfg, False),
                       lambda s: s),
    # rows of x and the gate z alternating (Zamba's Mamba in_proj: row 2c is x_c, 2c + 1 is z_c); ours x, then z
    "rows_interleaved": (lambda t, cfg: torch.cat([t[0::2], t[1::2]]),
                         lambda t, cfg: torch.stack(t.chunk(2), dim=1).flatten(0, 1), lambda s: s),
    # q or k rows that RoPE turns the other way (nanochat); v's rows go as "same"
    "rope_negated": (_rope_negated, _rope_negated, lambda s: s),
    # a fused up|gate tensor (GTE's up_gate_proj): our gate_up holds the gate first, so the halves swap (both ways)
    "swapped_halves": (lambda t, cfg: torch.cat(t.chunk(2)[::-1]), lambda t, cfg: torch.cat(t.chunk(2)[::-1]),
                       lambda s: s),
    # stacked experts stored as one matrix of their rows (E * I, C) (NomicBERT-MoE's w1); ours (E, I, C)
    "experts_rows": (lambda t, cfg: t.reshape(cfg.n_experts, -1, t.shape[-1]), lambda t, cfg: t.flatten(0, 1),
                     lambda s: (s[0] * s[1], *s[2:])),
    # the same of down projections, each expert's (I, C) as x @ w uses it (NomicBERT-MoE's w2); ours (E, C, I)
    "experts_rows_transposed": (lambda t, cfg: t.reshape(cfg.n_experts, -1, t.shape[-1]).transpose(1, 2),
                                lambda t, cfg: t.transpose(1, 2).flatten(0, 1), lambda s: (s[0] * s[2], s[1])),
    # a 1x1 convolution's weight (out, in / groups, 1) as a (grouped) linear one's (SqueezeBERT)
    "conv1x1": (lambda t, cfg: t.squeeze(-1), lambda t, cfg: t[..., None], lambda s: (*s, 1)),
    # a token shift's lerp stored as its complement: RWKV-6's x + (x_{t-1} - x) mu' as RWKV-4's x mu + x_{t-1} (1 - mu)
    "complement": (lambda t, cfg: 1 - t, lambda t, cfg: 1 - t, lambda s: s),
    # QRWKV6's token-shift LoRA, its five slices r k v w g where ours are w k v r g (one swap, its own inverse): W1
    # (d, 5 R) by column blocks, W2 (5, R, d) by rows
    "rkvwg_columns": (lambda t, cfg: _rkvwg(t, 1), lambda t, cfg: _rkvwg(t, 1), lambda s: s),
    "rkvwg_rows": (lambda t, cfg: _rkvwg(t, 0), lambda t, cfg: _rkvwg(t, 0), lambda s: s),
}
# layouts a stored tensor may come in as well as its rule's own, told apart by the stored shape (the rule's own where
# both fit), as transformers' Transpose(check_dims=True) reads them; written in the rule's own. Qwen3-VL-MoE's
# stacked experts: transformers 5 saves them as ours (E, out, in), the published checkpoints (E, in, out)
SHAPE_TOLD = {"experts_or_transposed": "experts_transposed"}
LAYOUTS["experts_or_transposed"] = LAYOUTS["same"]
# q, k and v of a family with interleaved RoPE, fused into qkv_proj: the q and k rows reordered
ROPE_PAIRS_QKV = ("rope_pairs", "rope_pairs", "same")


def with_rope_pairs(rules: list[Rule]) -> list[Rule]:
    """`rules` with their fused q, k, v rules laid out ROPE_PAIRS_QKV (GLM, Cohere, ERNIE 4.5, Helium)."""
    return [Rule(r.hf, r.ours, ROPE_PAIRS_QKV) if ".qkv_proj." in r.ours else r for r in rules]
# layouts that make one of our tensors of several HF ones by more than stacking pieces along dim 0:
# name -> (HF tensors -> ours, ours -> HF tensors), each given the ModelConfig; families register their own
# (Qwen3.5's split delta-rule projections, interop/qwen3_5.py)
JOINS: dict = {}
# layouts by which one HF tensor holds several of ours, its rows split among them (LaraMini's fused delta-rule in_proj,
# rows q|k|v|z|b|a, is our in_proj_qkvz and in_proj_ba): name -> (the whole HF tensor -> our tensor of its share of
# rows, our tensor -> that share); on export the rules naming one HF tensor fill its rows in the order of the rules
SPLITS: dict = {}


def _join_gated_q(parts: list[torch.Tensor], cfg) -> torch.Tensor:
    """q_proj, a separately stored output gate (AFMoE's gate_proj), k_proj, v_proj -> our qkv_proj rows, each head's
    gate rows after its query rows as layers/attention.py reads them ([q_0, g_0, q_1, g_1, ..., k, v])."""
    q, gate, k, v = parts
    heads = torch.stack([q.reshape(cfg.n_heads, cfg.head_dim, -1), gate.reshape(cfg.n_heads, cfg.head_dim, -1)], 1)
    return torch.cat([heads.reshape(-1, q.shape[-1]), k, v])


def _split_gated_q(t: torch.Tensor, cfg) -> list[torch.Tensor]:
    H, D = cfg.n_heads, cfg.head_dim
    heads, k, v = t.split([2 * H * D, cfg.n_kv_heads * D, cfg.n_kv_heads * D])
    q, gate = heads.reshape(H, 2, D, -1).unbind(1)
    return [q.reshape(H * D, -1), gate.reshape(H * D, -1), k, v]


JOINS["gated_q"] = (_join_gated_q, _split_gated_q)


def fused_sizes(cfg, rule: Rule, shape: tuple[int, ...]) -> list[int]:
    """How one of our fused tensors (of `shape`) splits along dim 0 into the HF tensors of `rule`: q|k|v rows
    (layers/attention.py; q with its output gate's rows), k|v rows (layers/cross_attention.py), gate|up halves
    (layers/ffn.py; also the shared experts of layers/moe.py); an expert tensor (E, rows, ...) splits, flattened
    to (E * rows, ...), into equal pieces per expert (layers/moe.py)."""
    if rule.experts:
        per_expert = len(rule.hf) // rule.experts
        return [shape[1] // per_expert] * len(rule.hf)
    if rule.layer is not None:  # a layer type may change the heads and their width (Gemma 4)
        cfg = cfg.for_layer(rule.layer)
    kv = cfg.n_kv_heads * cfg.head_dim
    if ".qkv_proj." in rule.ours:  # an output gate's rows ride with the queries' (q_proj emits both, Qwen3-Next);
        # q|k where the keys are the values too (attn_k_eq_v); values value_dim wide (MiMo-V2-Flash)
        return [cfg.n_heads * cfg.head_dim * (2 if cfg.attn_output_gate else 1), kv,
                cfg.n_kv_heads * cfg.value_width][:len(rule.hf)]
    if len(rule.hf) == 3:
        return [cfg.n_heads * cfg.head_dim, kv, kv]
    if ".kv_proj." in rule.ours:
        return [kv, kv]
    return [shape[0] // len(rule.hf)] * len(rule.hf)  # gate|up: equal halves (a dense FFN's or shared experts')


def expand(rules: list[Rule], cfg) -> list[Rule]:
    out = []
    for r in rules:
        n_layers = cfg.n_decoder_layers if r.ours.startswith("decoder.") else cfg.n_layers
        grouped = any("{g}" in h for h in r.hf)
        E = cfg.n_experts // cfg.moe_adjugate_group if grouped else cfg.n_experts if any("{e}" in h for h in r.hf) \
            else 0
        for i in (range(n_layers) if "{i}" in r.ours else [None]):
            hf = tuple(h.format(i=i, e=e, g=e) for e in range(max(E, 1)) for h in r.hf)
            out.append(Rule(hf, r.ours.format(i=i), r.layout, E, i if i is not None else r.layer))
    return out


def pieces(t: torch.Tensor, cfg, rule: Rule) -> list[torch.Tensor]:
    """Our tensor t as the views that the HF tensors of `rule` fill, in order."""
    if len(rule.hf) == 1:
        return [t]
    flat = t.flatten(0, 1) if rule.experts else t
    return list(flat.split(fused_sizes(cfg, rule, tuple(t.shape)), dim=0))


def export_state(ours: dict[str, torch.Tensor], rules: list[Rule], cfg) -> dict[str, torch.Tensor]:
    """Ours -> HF for a model with ModelConfig `cfg`; rules for tensors the model lacks are skipped."""
    hf = {}
    for r in expand(rules, cfg):
        if r.ours not in ours:
            continue
        if r.layout in JOINS:
            hf.update(zip(r.hf, (t.contiguous() for t in JOINS[r.layout][1](ours[r.ours], cfg))))
            continue
        if r.layout in SPLITS:
            rows, name = SPLITS[r.layout][1](ours[r.ours], cfg), r.hf[0]
            hf[name] = torch.cat([hf[name], rows]) if name in hf else rows.contiguous()
            continue
        for name, piece, layout in zip(r.hf, pieces(ours[r.ours], cfg, r), r.layouts()):
            hf[name] = LAYOUTS[layout][1](piece, cfg).contiguous()
    return hf
