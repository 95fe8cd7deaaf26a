"""Qwen3 (`model_type: qwen3`; Qwen Team 2025, "Qwen3 Technical Report", §2): LLaMA's dense layout with a
per-head RMSNorm on queries and keys before RoPE (qk_norm 'head') and no q, k, v biases (Qwen2 had them).
Its optional sliding window applies to the layers `layer_types` names `sliding_attention` (by default those
from `max_window_layers` on), mapped onto our per-layer types."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf
from .mapping import Rule

RULES = LLAMA_RULES + [Rule.of(f"model.layers.{{i}}.self_attn.{n}_norm.weight", f"blocks.{{i}}.attn.{n}_norm.weight")
                       for n in "qk"]
SLIDING, FULL = "sliding_attention", "full_attention"


def window_fields(hf: dict) -> dict:
    """The sliding window of a config with `use_sliding_window`, `sliding_window` and `layer_types` (or
    `max_window_layers`): on every layer, on none, or per layer type."""
    window = hf.get("sliding_window") if hf.get("use_sliding_window") else None
    if window is None:
        return {}
    n = hf["num_hidden_layers"]
    types = hf.get("layer_types") or [SLIDING if i >= hf.get("max_window_layers", n) else FULL for i in range(n)]
    if set(types) == {SLIDING}:
        return {"sliding_window": window}
    if set(types) == {FULL}:
        return {}
    return {"layer_types": list(types), "layer_overrides": {SLIDING: {"sliding_window": window}}}


def window_hf(cfg: ModelConfig) -> dict:
    """window_fields, inverted."""
    overrides = cfg.layer_overrides or {}
    if set(overrides) - {SLIDING} or any(set(f) != {"sliding_window"} for f in overrides.values()):
        raise LlmarchError(f"model_type {cfg.hf_model_type} takes layer types {FULL} and {SLIDING} "
                           "(layer_overrides: sliding_window only)")
    if cfg.layer_types is not None and overrides:
        types, window = cfg.layer_types, overrides[SLIDING]["sliding_window"]
    elif cfg.sliding_window is not None:
        types, window = [SLIDING] * cfg.n_layers, cfg.sliding_window
    else:
        return dict(use_sliding_window=False, sliding_window=None, layer_types=[FULL] * cfg.n_layers)
    if any(t not in (FULL, SLIDING) for t in types):
        raise LlmarchError(f"model_type {cfg.hf_model_type} takes layer types {FULL} and {SLIDING}")
    first = types.index(SLIDING)
    return dict(use_sliding_window=True, sliding_window=window, max_window_layers=first, layer_types=list(types))


_NOPE_FULL = {FULL: {"positions": "none"}}


def nope_window_fields(hf: dict) -> dict:
    """Sliding layers with RoPE and full layers without positions (EXAONE 4.0, Command R7B/A): the layer types from
    `layer_types`, or `sliding_window_pattern` (an integer: every that-many-th layer full), where the config has a
    sliding_window; none without one."""
    window, n, kind = hf.get("sliding_window"), hf["num_hidden_layers"], hf["model_type"]
    if window is None:
        return {}
    pattern = hf.get("sliding_window_pattern", 4)
    if not hf.get("layer_types") and not isinstance(pattern, int):
        raise LlmarchError(f"{kind}: sliding_window_pattern {pattern!r} without layer_types is not supported")
    types = hf.get("layer_types") or [SLIDING if (i + 1) % pattern else FULL for i in range(n)]
    if set(types) - {FULL, SLIDING}:
        raise LlmarchError(f"{kind}: layer types other than {FULL} and {SLIDING}: {sorted(set(types))}")
    # a model of fewer layers than the pattern's period may have no full layer at all
    return dict(layer_types=list(types), layer_overrides={SLIDING: {"sliding_window": window},
                                                          **(_NOPE_FULL if FULL in types else {})})


def nope_window_hf(cfg: ModelConfig) -> dict:
    """nope_window_fields, inverted: sliding_window and layer_types."""
    if cfg.layer_types is None:
        return dict(sliding_window=None, layer_types=[FULL] * cfg.n_layers)
    window = (cfg.layer_overrides or {}).get(SLIDING, {}).get("sliding_window")
    full = _NOPE_FULL if FULL in cfg.layer_types else {}
    if window is None or cfg.layer_overrides != {SLIDING: {"sliding_window": window}, **full} \
            or set(cfg.layer_types) - {FULL, SLIDING}:
        raise LlmarchError(f"model_type {cfg.hf_model_type} takes layer types {SLIDING} (a window, RoPE) and {FULL} "
                           "(no positions) and no other layer_overrides")
    return dict(sliding_window=window, layer_types=list(cfg.layer_types))


def to_config(hf: dict) -> ModelConfig:
    return llama_like_config(hf, qk_norm="head", **window_fields(hf))


def from_config(cfg: ModelConfig) -> dict:
    if cfg.qk_norm != "head":
        raise LlmarchError(f"model_type qwen3 needs qk_norm='head', got {cfg.qk_norm!r}")
    return llama_like_hf(cfg, architectures=["Qwen3ForCausalLM"], **window_hf(cfg))


FAMILIES.register("qwen3")(Family(RULES, to_config, from_config, IGNORE))
