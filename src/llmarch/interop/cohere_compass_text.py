"""Cohere's North / Compass language model (`model_type: cohere_compass_text`, transformers' CohereCompassForCausalLM,
the text model of `cohere_compass`, CohereLabs/North-Micro-Vision-Instruct): Command R7B's parallel block (one
LayerNorm without bias feeding attention and the SwiGLU MLP, the head tied, logits times logit_scale: by default none,
1.0) with what differs from `cohere2`:
- RoPE per layer type: `rope_parameters` is keyed by layer type, each entry a default RoPE with its own base or null
  (that type's layers attend without positions); the full and sliding types need not be NoPE and RoPE as in Command
  R7B;
- RoPE turns each head's halves (Qwen3's rotate_half), not adjacent pairs as Cohere's, so q and k keep their layout;
- head_dim is always hidden_size // num_attention_heads (the config class overwrites any other).
The RoPE is Qwen3-VL's interleaved M-RoPE; for text, whose positions are the same on its three axes, that is plain
RoPE, which is all llmarch reads (vision positions and DeepStack come only with the vision tower, not read)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .cohere import cohere_fields, cohere_hf
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config
from .qwen3 import FULL, SLIDING

RULES = [r for r in LLAMA_RULES if "post_attention_layernorm" not in r.hf[0]]


def type_rope_fields(hf: dict) -> dict:
    """layer_types and layer_overrides from `rope_parameters` keyed by layer type (each entry a default RoPE or null:
    no positions), a sliding_window on the sliding type; the config's own RoPE base is the first RoPE type's."""
    n, kind = hf["num_hidden_layers"], hf["model_type"]
    types = list(hf.get("layer_types") or [FULL] * n)
    params = hf.get("rope_parameters") or {}
    if len(types) != n or set(types) - {FULL, SLIDING} or any(t not in params for t in types):
        raise LlmarchError(f"{kind}: layer_types need {n} entries of {FULL} or {SLIDING}, and rope_parameters an "
                           f"entry (a RoPE or null) for each type; got {types} and {sorted(params)}")
    ropes = {t: params[t] for t in dict.fromkeys(types)}
    for t, p in ropes.items():
        if p is not None and (p.get("rope_type", "default") != "default" or p.get("partial_rotary_factor", 1) != 1):
            raise LlmarchError(f"{kind}: the {t} layers' RoPE {p} is not supported (default RoPE on whole heads)")
    thetas = [float(p["rope_theta"]) for p in ropes.values() if p is not None]
    theta = thetas[0] if thetas else 10000.0
    overrides = {}
    for t, p in ropes.items():
        fields = {"positions": "none"} if p is None else {"rope_theta": float(p["rope_theta"])}
        fields = {k: v for k, v in fields.items() if v != theta}
        if t == SLIDING:
            if not hf.get("sliding_window"):
                raise LlmarchError(f"{kind}: sliding_attention layers need a positive sliding_window")
            fields["sliding_window"] = int(hf["sliding_window"])
        if fields:
            overrides[t] = fields
    return dict(layer_types=types, layer_overrides=overrides or None, rope_theta=theta, rope_scaling="none",
                rope_factor=1.0)


def type_rope_hf(cfg: ModelConfig) -> dict:
    """type_rope_fields inverted: layer_types, sliding_window and rope_parameters keyed by type."""
    types = list(cfg.layer_types or [FULL] * cfg.n_layers)
    if set(types) - {FULL, SLIDING} or cfg.rope_scaling != "none" or cfg.sliding_window is not None or any(
            set(f) - {"positions", "rope_theta", "sliding_window"} for f in (cfg.layer_overrides or {}).values()):
        raise LlmarchError(f"model_type {cfg.hf_model_type} takes layer types {FULL} and {SLIDING}, each a default "
                           "RoPE or none, the sliding one a window, and no other layer_overrides")
    params, window = {}, None
    for i, t in enumerate(types):
        c = cfg.for_layer(i)
        if (c.sliding_window is not None) != (t == SLIDING) or c.positions not in ("rope", "none") \
                or c.rope_fraction != 1.0:
            raise LlmarchError(f"model_type {cfg.hf_model_type}: layer {i} ({t}) needs RoPE on whole heads or none, "
                               "and a window only on the sliding type")
        params[t] = None if c.positions == "none" else {"rope_type": "default", "rope_theta": c.rope_theta}
        window = c.sliding_window or window
    return dict(layer_types=types, sliding_window=window, rope_parameters=params)


def to_config(hf: dict) -> ModelConfig:
    head_dim = hf["hidden_size"] // hf["num_attention_heads"]
    return llama_like_config({**hf, "mlp_bias": False, "head_dim": head_dim},
                             **{**cohere_fields(hf), **type_rope_fields(hf)})


def from_config(cfg: ModelConfig) -> dict:
    if cfg.head_dim != cfg.d_model // cfg.n_heads:
        raise LlmarchError(f"model_type {cfg.hf_model_type} needs head_dim = d_model // n_heads")
    return cohere_hf(cfg, "CohereCompassForCausalLM", **type_rope_hf(cfg))


FAMILIES.register("cohere_compass_text")(Family(RULES, to_config, from_config, IGNORE))
