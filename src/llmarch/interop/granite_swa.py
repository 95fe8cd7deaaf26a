"""IBM Granite with sliding windows and attention sinks (`model_type: granite_swa`, transformers' GraniteSWAForCausalLM,
ibm-granite/granite-swash-2b; and `granitemoe_swa`, GraniteMoeSWAForCausalLM, granite-swash-3b-a600m): Granite's
layout and four scalars (granite.py; Granite MoE's experts and optional shared MLP for the MoE one, granite_moe.py)
with
- a learned sink logit per head (`self_attn.sinks`): transformers scales each head's output by
  sigmoid(logsumexp(scores) - sink), which is softmax with one more logit `sink` and no value, gpt-oss's sinks
  (attn_sinks, layers/sinks.py);
- `layer_types` of sliding (over sliding_window keys) and full layers, by default full where i % 4 == 0;
- `layer_rope_theta`: a RoPE base per layer, 0 for none (NoPE). Each distinct (attention, base) pair is one of our
  layer types, named after transformers' with `_nope` or `_theta<base>` appended where the base is not the model's."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .granite import NEEDS, scalars, scalars_hf, unexpressible
from .granite_moe import SHARED_RULES, STACKED, shared_config, shared_hf
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf, rope_fields
from .mapping import Rule
from .qwen3 import FULL, SLIDING

_SINKS = Rule.of("model.layers.{i}.self_attn.sinks", "blocks.{i}.attn.sinks")
# granitemoe_swa has no conversion mapping in transformers: its files hold the model's own names, the router's weight
# and the experts stacked (granite_moe.STACKED), where Granite MoE's files hold router.layer, input_linear and
# output_linear
_MOE_RULES = [r for r in SHARED_RULES if "block_sparse_moe." not in r.hf[0]] + STACKED + [
    Rule.of("model.layers.{i}.block_sparse_moe.router.weight", "blocks.{i}.mlp.router.weight")]
_OVERRIDABLE = {"sliding_window", "positions", "rope_theta"}
_SWA_NEEDS = {k: v for k, v in NEEDS.items() if k not in ("sliding_window", "layer_types", "attn_sinks")}


def swa_fields(hf: dict) -> dict:
    """attn_sinks, and the layer types of layer_types, sliding_window and layer_rope_theta."""
    n, window = hf["num_hidden_layers"], hf.get("sliding_window", 128)
    attn = list(hf.get("layer_types") or [FULL if i % 4 == 0 else SLIDING for i in range(n)])
    base = rope_fields(hf)["rope_theta"]
    thetas = [float(t) for t in hf.get("layer_rope_theta") or [base] * n]
    if set(attn) - {FULL, SLIDING} or len(attn) != n or len(thetas) != n:
        raise LlmarchError(f"{hf['model_type']}: layer_types and layer_rope_theta need {n} entries each, the types "
                           f"{FULL} or {SLIDING}")
    if SLIDING in attn and window is None:
        raise LlmarchError(f"{hf['model_type']}: sliding_attention layers need a sliding_window")
    types, overrides = [], {}
    for kind, theta in zip(attn, thetas):
        name = kind + ("" if theta == base else "_nope" if theta == 0 else f"_theta{theta:g}")
        fields = {"sliding_window": int(window)} if kind == SLIDING else {}
        fields.update({} if theta == base else {"positions": "none"} if theta == 0 else {"rope_theta": theta})
        types.append(name)
        if fields:
            overrides[name] = fields
    return dict(attn_sinks=True, layer_types=types, layer_overrides=overrides or None)


def swa_hf(cfg: ModelConfig) -> dict:
    """swa_fields inverted: sliding_window, layer_types, layer_rope_theta."""
    overrides = cfg.layer_overrides or {}
    if cfg.sliding_window is not None or any(set(f) - _OVERRIDABLE for f in overrides.values()):
        raise LlmarchError(f"model_type {cfg.hf_model_type} takes layer types that change sliding_window, positions "
                           "and rope_theta only (no model-wide window)")
    layers = [cfg.for_layer(i) for i in range(cfg.n_layers)]
    windows = {c.sliding_window for c in layers} - {None}
    if len(windows) > 1:
        raise LlmarchError(f"model_type {cfg.hf_model_type} has one sliding_window, not {sorted(windows)}")
    return dict(sliding_window=windows.pop() if windows else None,
                layer_types=[FULL if c.sliding_window is None else SLIDING for c in layers],
                layer_rope_theta=[0 if c.positions == "none" else c.rope_theta for c in layers])


def _plain(cfg: ModelConfig) -> ModelConfig:
    """cfg without what swa_fields adds, for the exporters of granite.py and granite_moe.py."""
    return cfg.replace(attn_sinks=False, layer_types=None, layer_overrides=None)


def _needs(cfg: ModelConfig) -> str | None:
    if not cfg.attn_sinks:
        return "attn_sinks=True"
    if not cfg.n_experts:
        return unexpressible(cfg, _SWA_NEEDS)
    if cfg.head_dim * cfg.n_heads != cfg.d_model:
        return f"head_dim = d_model / n_heads = {cfg.d_model // cfg.n_heads} (its config has no head_dim)"
    return unexpressible(cfg, {k: v for k, v in _SWA_NEEDS.items() if k != "n_experts"})


def to_config(hf: dict) -> ModelConfig:
    return llama_like_config({"rms_norm_eps": 1e-5, "tie_word_embeddings": True, **hf}, **scalars(hf),
                             **swa_fields(hf))


def from_config(cfg: ModelConfig) -> dict:
    return llama_like_hf(_plain(cfg), architectures=["GraniteSWAForCausalLM"], **scalars_hf(cfg), **swa_hf(cfg))


def moe_config(hf: dict) -> ModelConfig:
    return shared_config(hf).replace(hf_model_type="granitemoe_swa", **swa_fields(hf))


def moe_hf(cfg: ModelConfig) -> dict:
    out = shared_hf(_plain(cfg).replace(hf_model_type="granitemoeshared"))
    return {**out, "model_type": "granitemoe_swa", "architectures": ["GraniteMoeSWAForCausalLM"], **swa_hf(cfg)}


FAMILIES.register("granite_swa")(Family(LLAMA_RULES + [_SINKS], to_config, from_config, IGNORE, needs=_needs))
FAMILIES.register("granitemoe_swa")(Family(_MOE_RULES + [_SINKS], moe_config, moe_hf, IGNORE, stacked_experts=STACKED,
                                           needs=_needs))
