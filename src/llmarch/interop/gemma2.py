"""Gemma 2 (`model_type: gemma2`; Gemma Team 2024, "Gemma 2", §2): Gemma's layout (RMSNorm gains stored as
g - 1, embeddings times sqrt(d_model), tanh-GELU GeGLU, tied head) and
- sandwich norms (norm_placement 'sandwich'): input_layernorm before attention and post_attention_layernorm
  on its output, pre_feedforward_layernorm before the FFN and post_feedforward_layernorm on its output (note:
  LLaMA's post_attention_layernorm is the FFN's input norm; Gemma 2's is the attention's output norm);
- attention scores scaled by query_pre_attn_scalar^-0.5 (attn_scale), soft-capped at attn_logit_softcapping
  before the softmax (attn_softcap), and the LM head's logits at final_logit_softcapping (final_softcap);
- layer_types: a `sliding_attention` layer's query sees itself and the sliding_window - 1 cache slots before
  it (transformers' mask: kv_idx > q_idx - sliding_window, our sliding_window kind), a `full_attention` layer
  sees every earlier slot; by default layer i slides when i is even. Our layer types take transformers' names,
  the sliding one overriding sliding_window (config.layer_types / layer_overrides).
gemma3.py extends these helpers."""
from __future__ import annotations

import math

from ..config import LAYER_FIELDS, ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf
from .mapping import Rule

SLIDING, FULL = "sliding_attention", "full_attention"
_L = "model.layers.{i}."
RULES = [r for r in LLAMA_RULES if "post_attention_layernorm" not in r.hf[0]] + [
    Rule.of(_L + "post_attention_layernorm.weight", "blocks.{i}.post_ln1.weight"),
    Rule.of(_L + "pre_feedforward_layernorm.weight", "blocks.{i}.ln2.weight"),
    Rule.of(_L + "post_feedforward_layernorm.weight", "blocks.{i}.post_ln2.weight"),
]
# what transformers' Gemma2Config assumes for fields a config.json leaves out
DEFAULTS = dict(head_dim=256, hidden_activation="gelu_pytorch_tanh", max_position_embeddings=8192,
                rms_norm_eps=1e-6, tie_word_embeddings=True, query_pre_attn_scalar=256, sliding_window=4096,
                final_logit_softcapping=30.0, attn_logit_softcapping=50.0)
# fields a Gemma config must round-trip exactly: anything else the HF config cannot express is an error
_EXPORTED = ("norm", "norm_placement", "embed_scale", "ffn", "attn_softcap", "final_softcap", "bias", "qkv_bias",
             "tie_embeddings", "head_dim", "n_kv_heads", "causal")


def layer_types(hf: dict, period: int) -> list[str]:
    """Each layer's type: config.json's layer_types, or every period-th layer full and the rest sliding."""
    types = hf.get("layer_types") or [SLIDING if (i + 1) % period else FULL for i in range(hf["num_hidden_layers"])]
    unknown = sorted(set(types) - {SLIDING, FULL})
    if unknown:
        raise LlmarchError(f"layer type {unknown[0]!r} is not supported; supported: {SLIDING}, {FULL}")
    return list(types)


def gemma_like_config(hf: dict, defaults: dict, period: int, sliding_fields: dict | None = None,
                      **overrides) -> ModelConfig:
    """A Gemma 2/3 config: sandwich norms, offset RMSNorm, scaled embeddings, the attention scale and caps, and
    the layer types, sliding layers overriding sliding_window (and sliding_fields, e.g. Gemma 3's local RoPE)."""
    hf = {**defaults, **hf}  # an explicit null stays null (Gemma 3: no final cap)
    if hf.get("use_bidirectional_attention"):
        raise LlmarchError(f"{hf['model_type']} with use_bidirectional_attention is not supported")
    types = layer_types(hf, period)
    overrides_by_type = {}
    if SLIDING in types:
        if hf.get("sliding_window") is None:
            raise LlmarchError("sliding_attention layers need a sliding_window")
        overrides_by_type[SLIDING] = {"sliding_window": int(hf["sliding_window"]), **(sliding_fields or {})}
    fields = dict(norm="rmsnorm_offset", embed_scale=True, norm_placement="sandwich",
                  attn_scale=float(hf["query_pre_attn_scalar"]) ** -0.5, attn_softcap=hf.get("attn_logit_softcapping"),
                  final_softcap=hf.get("final_logit_softcapping"), layer_types=types,
                  layer_overrides=overrides_by_type or None)
    fields.update(overrides)
    return llama_like_config({**hf, "hidden_act": hf["hidden_activation"]}, **fields)


def gemma_like_hf(cfg: ModelConfig, to_config, bidirectional: bool = False, **extra) -> dict:
    """config.json for a Gemma 2/3 config; an error where the HF config would load as a different model.
    bidirectional: written as use_bidirectional_attention (Gemma 3's; T5Gemma's encoders say it otherwise)."""
    types = []
    for i in range(cfg.n_layers):
        kind = cfg.for_layer(i).attention
        if kind not in ("full", "sliding_window"):
            raise LlmarchError(f"model_type {cfg.hf_model_type} has full and sliding-window layers only; layer {i} "
                               f"has attention={kind!r}")
        types.append(SLIDING if kind == "sliding_window" else FULL)
    window = next((cfg.for_layer(i).sliding_window for i, t in enumerate(types) if t == SLIDING), None)
    if bidirectional:  # Gemma 3's use_bidirectional_attention: config.json keeps the window w as 2 (w - 1)
        extra["use_bidirectional_attention"] = True
        window = window and 2 * (window - 1)
    scale = cfg.attn_scale if cfg.attn_scale is not None else cfg.head_dim ** -0.5
    out = llama_like_hf(cfg, query_pre_attn_scalar=round(scale ** -2),
                        sliding_window=window, layer_types=types, final_logit_softcapping=cfg.final_softcap,
                        attn_logit_softcapping=cfg.attn_softcap, **extra)
    out["hidden_activation"] = out.pop("hidden_act")
    _check_expressible(cfg, to_config(out))
    return out


def _check_expressible(cfg: ModelConfig, back: ModelConfig) -> None:
    scales = [c.attn_scale if c.attn_scale is not None else c.head_dim ** -0.5 for c in (cfg, back)]
    if not math.isclose(*scales, rel_tol=1e-9):
        raise LlmarchError(f"model_type {cfg.hf_model_type} stores the attention scale as query_pre_attn_scalar^-0.5 "
                           f"with an integer scalar; attn_scale={cfg.attn_scale} is not one")
    for name in _EXPORTED:
        if getattr(cfg, name) != getattr(back, name):
            raise LlmarchError(f"model_type {cfg.hf_model_type} cannot express {name}={getattr(cfg, name)!r} "
                               f"(it would load as {getattr(back, name)!r})")
    for i in range(cfg.n_layers):
        ours, theirs = cfg.for_layer(i), back.for_layer(i)
        for name in LAYER_FIELDS:
            if getattr(ours, name) != getattr(theirs, name):
                raise LlmarchError(f"model_type {cfg.hf_model_type} cannot express layer {i}'s {name}="
                                   f"{getattr(ours, name)!r} (it would load as {getattr(theirs, name)!r})")


def to_config(hf: dict) -> ModelConfig:
    return gemma_like_config(hf, DEFAULTS, period=2)


def from_config(cfg: ModelConfig) -> dict:
    return gemma_like_hf(cfg, to_config, architectures=["Gemma2ForCausalLM"])


FAMILIES.register("gemma2")(Family(RULES, to_config, from_config, IGNORE))
