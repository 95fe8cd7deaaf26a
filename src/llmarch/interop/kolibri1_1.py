"""Aleph Alpha Kolibri-1.1 (`model_type: kolibri1_1`, transformers' Kolibri1_1ForCausalLM, Aleph-Alpha/Kolibri-1.1):
Kolibri-1's blocks (kolibri1.py: per-head QK-norm, sandwich norms, experts chosen by logits plus an expert bias beside
a shared expert) with what changed:
- `indexed_attention` layers in place of the full ones (by default every 5th), without positions: each query attends
  to the index_topk keys a weightless indexer scores highest (ReLU'd logits of the first index_num_heads query heads
  against key head 0) among a pool, plus index_num_sink_tokens first and index_num_local_tokens last keys; a query
  that sees no more keys than that budget attends to all of them. llmarch implements the short-context case only:
  its context_length is capped at index_topk + index_num_local_tokens + index_num_sink_tokens (2184 by default),
  within which the layers are full attention. Their keys and values are rounded to NVFP4 before attending, at
  every length (kv_fp4, layers/nvfp4.py);
- KV sharing among the indexed layers (kv_source_layers: a layer reading an earlier one's keys and values has no
  k_proj, v_proj or k_norm, and shares its cache; config.kv_source_layers);
- dense SwiGLU FFNs of mlp_only_intermediate_size on mlp_only_layers (by default the first two; the first k only)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .gemma4 import qkv_rules
from .hf import FAMILIES, Family
from .kolibri1 import RULES as KOLIBRI1_RULES, kolibri_fields, kolibri_needs
from .llama import IGNORE, llama_like_config, llama_like_hf
from .mixtral import STACKED

SLIDING, INDEXED = "sliding_attention", "indexed_attention"
RULES = [r for r in KOLIBRI1_RULES if ".qkv_proj." not in r.ours]  # q, k, v per layer: qkv_rules
_SOURCES = (0, 0, 0, 3, 4, 5, 5, 5, 5, 0)  # Kolibri1_1Config's default: the indexed layer each indexed layer reads


def _sources(hf: dict, types: list[str]) -> list[int]:
    if hf.get("kv_source_layers") is not None:
        return [int(j) for j in hf["kv_source_layers"]]
    indexed = [i for i, t in enumerate(types) if t == INDEXED]
    if len(indexed) > len(_SOURCES):
        raise LlmarchError(f"kolibri1_1: {len(indexed)} indexed layers need kv_source_layers in config.json")
    sources = list(range(len(types)))
    for i, j in zip(indexed, _SOURCES):
        sources[i] = indexed[j]
    return sources


def to_config(hf: dict) -> ModelConfig:
    n = hf["num_hidden_layers"]
    types = list(hf.get("layer_types") or [INDEXED if (i + 1) % 5 == 0 else SLIDING for i in range(n)])
    if len(types) != n or set(types) - {SLIDING, INDEXED} or not hf.get("sliding_window"):
        raise LlmarchError(f"kolibri1_1: layer_types need {n} entries of {SLIDING} or {INDEXED}, and a sliding_window")
    dense = sorted(hf.get("mlp_only_layers") if hf.get("mlp_only_layers") is not None else range(min(n, 2)))
    if dense != list(range(len(dense))):
        raise LlmarchError(f"kolibri1_1: mlp_only_layers={dense} is not supported (llmarch's dense layers are the first "
                           "k)")
    budget = sum(int(hf.get(k, d)) for k, d in (("index_topk", 2048), ("index_num_local_tokens", 128),
                                                 ("index_num_sink_tokens", 8)))
    overrides = {SLIDING: {"sliding_window": int(hf["sliding_window"])},
                 INDEXED: {"positions": "none", "kv_fp4": True}}
    return llama_like_config(
        {**hf, "intermediate_size": int(hf.get("mlp_only_intermediate_size", 3584)), "attention_bias": False,
         "mlp_bias": False}, **kolibri_fields(hf), moe_dense_first=len(dense), layer_types=types,
        layer_overrides={t: f for t, f in overrides.items() if t in types}, kv_source_layers=_sources(hf, types),
        context_length=min(int(hf.get("max_position_embeddings", 131072)), budget))


def _needs(cfg: ModelConfig) -> str | None:
    types = cfg.layer_types or []
    window = (cfg.layer_overrides or {}).get(SLIDING, {}).get("sliding_window")
    expected = {SLIDING: {"sliding_window": window}, INDEXED: {"positions": "none", "kv_fp4": True}}
    if set(types) - {SLIDING, INDEXED} or window is None or cfg.layer_overrides != {
            t: f for t, f in expected.items() if t in types}:
        return f"layer types {SLIDING} (a window, RoPE) and {INDEXED} (no positions, NVFP4 keys and values) only"
    return kolibri_needs(cfg, dense_first=True)


def from_config(cfg: ModelConfig) -> dict:
    k = cfg.moe_dense_first
    out = llama_like_hf(cfg, architectures=["Kolibri1_1ForCausalLM"], num_local_experts=cfg.n_experts,
                        num_experts_per_tok=cfg.experts_per_token, moe_intermediate_size=cfg.expert_hidden,
                        shared_expert_intermediate_size=cfg.shared_hidden, norm_topk_prob=cfg.router_renormalize,
                        mlp_only_layers=list(range(k)), mlp_only_intermediate_size=cfg.ffn_hidden,
                        layer_types=list(cfg.layer_types),
                        sliding_window=cfg.layer_overrides[SLIDING]["sliding_window"],
                        kv_source_layers=[cfg.kv_source(i) for i in range(cfg.n_layers)],
                        # the indexer's budget at least context_length, within which it selects every key; its heads
                        # then score nothing, so as many as key head 0 has
                        index_topk=max(2048, cfg.context_length - 136), index_num_local_tokens=128,
                        index_num_sink_tokens=8, index_num_heads=cfg.n_heads // cfg.n_kv_heads)
    for key in ("mlp_bias", "attention_bias", "intermediate_size"):
        out.pop(key)
    return out


FAMILIES.register("kolibri1_1")(Family(RULES, to_config, from_config, IGNORE, stacked_experts=STACKED, needs=_needs,
                                       more_rules=qkv_rules))
