"""Poolside Laguna (`model_type: laguna`, transformers' LagunaForCausalLM, poolside/laguna-XS.2): LLaMA's pre-norm
layout with
- attention with a per-head RMSNorm on q and k before RoPE (qk_norm 'head'), biases on q, k, v and o
  (attention_bias), and an output gate per head: each head's output times softplus(x w_h), w_h a row of `g_proj`
  (attn_head_gate, attn_gate_fn 'softplus'; gating true or 'per-head'; 'per-element' is
  refused);
- `layer_types` of full and sliding-window layers, each type its own RoPE base and share of rotated dims
  (rope_parameters keyed by layer type: by default 500000 on half of each head for full layers, 10000 on all of it
  for sliding ones), and a query-head count per layer (num_attention_heads_per_layer): each distinct (type, heads) one
  of our layer types, named after transformers' type with `_heads<n>` appended where n is not num_attention_heads;
- the dense layers mlp_layer_types names first, then mixtures: sigmoid scores of soft-capped logits
  (moe_router_logit_softcapping: router_softcap), an expert bias for the choice (stored as
  `mlp.experts.e_score_correction_bias`), the chosen scores renormalised and times moe_routed_scaling_factor, plus an
  ungated shared expert (`mlp.shared_expert`, shared_expert_intermediate_size wide)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .deepseek_v2 import dense_first, first_dense, moe_rules
from .hf import FAMILIES, Family
from .llama import IGNORE, llama_like_config, llama_like_hf
from .mapping import Rule
from .mixtral import STACKED, shared_fields
from .qwen3 import FULL, RULES as QWEN3_RULES, SLIDING

RULES = QWEN3_RULES + [Rule.of("model.layers.{i}.self_attn.g_proj.weight", "blocks.{i}.attn.g_proj.weight")] + \
    moe_rules("experts.e_score_correction_bias", shared="shared_expert")
# the config class's rope_parameters where config.json has none
DEFAULT_ROPE = {FULL: {"rope_theta": 500000.0, "partial_rotary_factor": 0.5},
                SLIDING: {"rope_theta": 10000.0, "partial_rotary_factor": 1.0}}


def type_rope(hf: dict, kind: str, defaults: dict, partial: float = 1.0) -> dict:
    """One layer type's RoPE fields from rope_parameters[kind] (default RoPE only; `defaults` where config.json has
    no rope_parameters; partial_rotary_factor `partial` where the type's entry has none, as the model's rotary
    embedding reads it)."""
    params = (hf.get("rope_parameters") or defaults).get(kind) or defaults[kind]
    if params.get("rope_type", "default") != "default":
        raise LlmarchError(f"{hf['model_type']}: rope_type {params['rope_type']!r} of the {kind} layers is not "
                           "supported (default only)")
    return dict(rope_theta=float(params.get("rope_theta", defaults[kind]["rope_theta"])),
                rope_fraction=float(params.get("partial_rotary_factor", partial)))


def layer_fields(hf: dict, defaults: dict = DEFAULT_ROPE, partial: float = 1.0, **sliding) -> dict:
    """layer_types and layer_overrides of a config whose full and sliding layers each have their own RoPE (type_rope's
    `defaults` and `partial`; and, with num_attention_heads_per_layer, their own query heads per layer), the full
    type's RoPE the config's own fields; `sliding`: more fields the sliding layers change."""
    n, heads = hf["num_hidden_layers"], hf["num_attention_heads"]
    kinds = list(hf.get("layer_types") or [FULL] * n)
    per_layer = list(hf.get("num_attention_heads_per_layer") or [heads] * n)
    if set(kinds) - {FULL, SLIDING} or len(kinds) != n or len(per_layer) != n:
        raise LlmarchError(f"{hf['model_type']}: layer_types (and num_attention_heads_per_layer) need {n} entries, "
                           f"the types {FULL} or {SLIDING}")
    window = hf.get("sliding_window")
    if SLIDING in kinds and not window:
        raise LlmarchError(f"{hf['model_type']}: sliding_attention layers need a positive sliding_window")
    full = type_rope(hf, FULL, defaults, partial)
    rope = {FULL: {}, SLIDING: {k: v for k, v in type_rope(hf, SLIDING, defaults, partial).items() if v != full[k]}}
    types, overrides = [], {}
    for kind, h in zip(kinds, per_layer):
        name = kind + ("" if h == heads else f"_heads{h}")
        fields = dict(rope[kind], **({"sliding_window": int(window), **sliding} if kind == SLIDING else {}))
        fields.update({} if h == heads else {"n_heads": int(h)})
        types.append(name)
        if fields:
            overrides[name] = fields
    return dict(layer_types=types, layer_overrides=overrides or None, **full)


def layer_hf(cfg: ModelConfig) -> dict:
    """layer_fields inverted: layer_types, num_attention_heads_per_layer, sliding_window, rope_parameters."""
    layers = [cfg.for_layer(i) for i in range(cfg.n_layers)]
    kinds = [FULL if c.sliding_window is None else SLIDING for c in layers]
    sliding = [c for c in layers if c.sliding_window is not None]
    if cfg.sliding_window is not None or len({c.sliding_window for c in sliding}) > 1 or len(
            {(c.rope_theta, c.rope_fraction) for c in sliding}) > 1 or any(
            c.rope_scaling != "none" or (k == FULL and (c.rope_theta, c.rope_fraction) != (cfg.rope_theta,
                                                                                        cfg.rope_fraction))
            for c, k in zip(layers, kinds)):
        raise LlmarchError(f"model_type {cfg.hf_model_type} has one window and one default RoPE per layer type "
                           "(the full type's the config's own)")
    params = {k: {"rope_type": "default", "rope_theta": c.rope_theta, "partial_rotary_factor": c.rope_fraction}
              for k, c in ((FULL, cfg), (SLIDING, sliding[0] if sliding else cfg))}
    return dict(layer_types=kinds, num_attention_heads_per_layer=[c.n_heads for c in layers],
                sliding_window=sliding[0].sliding_window if sliding else None, rope_parameters=params)


def to_config(hf: dict) -> ModelConfig:
    gating = hf.get("gating", True)
    if gating not in (True, "per-head"):
        raise LlmarchError(f"laguna: gating {gating!r} is not supported (a softplus gate per head: true or "
                           "'per-head')")
    if hf.get("moe_apply_router_weight_on_input"):
        raise LlmarchError("laguna: moe_apply_router_weight_on_input is not supported (nor by transformers)")
    bias, width = bool(hf.get("attention_bias", False)), int(hf.get("moe_intermediate_size", 512))
    cap = float(hf.get("moe_router_logit_softcapping") or 0.0)
    return llama_like_config(
        {**hf, "attention_bias": False, "mlp_bias": False}, qkv_bias=bias, o_bias=bias, qk_norm="head",
        attn_head_gate=True, attn_gate_fn="softplus",
        n_experts=int(hf.get("num_experts", 256)), experts_per_token=int(hf.get("num_experts_per_tok", 8)),
        expert_hidden=width, router_scoring="sigmoid", expert_bias=True,
        router_scale=float(hf.get("moe_routed_scaling_factor", 1.0)),
        router_softcap=cap if cap > 0 else None, moe_dense_first=dense_first(hf),
        **shared_fields(int(hf.get("shared_expert_intermediate_size", 512)), width), **layer_fields(hf))


def _needs(cfg: ModelConfig) -> str | None:
    if not (cfg.attn_head_gate and not cfg.attn_output_gate and cfg.attn_gate_fn == "softplus"):
        return "a softplus output gate per head (attn_head_gate, attn_gate_fn='softplus', no attn_output_gate)"
    if cfg.qk_norm != "head" or cfg.qkv_bias != cfg.o_bias or cfg.bias or cfg.value_width != cfg.head_dim:
        return "a per-head QK-norm, the same bias on q, k, v and o, none on the MLP, and values of head_dim"
    if any(set(f) - {"sliding_window", "rope_theta", "rope_fraction", "n_heads"}
           for f in (cfg.layer_overrides or {}).values()):
        return "layer types that change sliding_window, rope_theta, rope_fraction and n_heads only"
    if not cfg.n_experts or cfg.router_scoring != "sigmoid" or not cfg.expert_bias or cfg.router_groups > 1 \
            or not cfg.router_renormalize or cfg.shared_expert_gate or cfg.n_shared_experts > 1 \
            or cfg.router_bias_on_logits or cfg.moe_period != 1:
        return "a mixture routed by sigmoid scores with an expert bias, renormalised, beside one ungated shared expert"
    return None


def from_config(cfg: ModelConfig) -> dict:
    k = first_dense(cfg)
    out = llama_like_hf(cfg, architectures=["LagunaForCausalLM"], gating=True,
                        mlp_layer_types=["dense"] * k + ["sparse"] * (cfg.n_layers - k), num_experts=cfg.n_experts,
                        num_experts_per_tok=cfg.experts_per_token, moe_intermediate_size=cfg.expert_hidden,
                        shared_expert_intermediate_size=cfg.shared_hidden, moe_routed_scaling_factor=cfg.router_scale,
                        moe_router_logit_softcapping=cfg.router_softcap or 0.0, **layer_hf(cfg))
    out.pop("mlp_bias")
    return out


FAMILIES.register("laguna")(Family(RULES, to_config, from_config, IGNORE, stacked_experts=STACKED, needs=_needs))
