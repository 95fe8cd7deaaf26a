"""Xiaomi MiMo-V2-Flash (`model_type: mimo_v2_flash`, transformers' MiMoV2FlashForCausalLM; Xiaomi 2025,
"MiMo-V2-Flash Technical Report"): LLaMA's layout with
- values narrower than queries and keys (v_head_dim 128 beside head_dim 192: our value_dim), times a constant after
  their projection (attention_value_scale, about sqrt(d / (H v_head_dim)): attn_value_multiplier), q, k, v biases
  (attention_bias) and none on o_proj;
- `layer_types` of full and sliding-window layers (by default full on layer 0 and every 6th); a sliding layer has
  twice the KV heads and a learned sink logit per head (stored as `attention_sink_bias`), and each type its own RoPE
  base and share of rotated dims (rope_parameters keyed by layer type, partial_rotary_factor 0.334): one of our layer
  types each, the full one the config's own fields;
- DeepSeek-V3's router (sigmoid scores, an expert bias for the choice, groups, renormalised, times
  routed_scaling_factor) over routed SwiGLU experts with no shared expert, after the dense layers mlp_layer_types
  names first. The multi-token-prediction weights (model.mtp.*) are not loaded, as transformers does not load them."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .deepseek_v2 import dense_first, first_dense, moe_rules, v3_router_fields
from .glm4_moe import check_v3_mixture
from .hf import FAMILIES, Family
from .laguna import type_rope
from .llama import IGNORE as LLAMA_IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf
from .mapping import Rule
from .mixtral import STACKED
from .qwen3 import FULL, SLIDING

_PARTIAL = 0.334  # the rotary embedding's partial_rotary_factor where a type's rope_parameters have none
_DEFAULT_ROPE = {FULL: {"rope_theta": 5_000_000.0, "partial_rotary_factor": _PARTIAL},
                 SLIDING: {"rope_theta": 10_000.0, "partial_rotary_factor": _PARTIAL}}
RULES = LLAMA_RULES + moe_rules() + [Rule.of("model.layers.{i}.self_attn.attention_sink_bias", "blocks.{i}.attn.sinks")]
IGNORE = LLAMA_IGNORE + (r"^model\.mtp\.",)


def to_config(hf: dict) -> ModelConfig:
    n, kv = hf["num_hidden_layers"], hf.get("num_key_value_heads", 4)
    types = list(hf.get("layer_types") or [FULL if i == 0 or (i + 1) % 6 == 0 else SLIDING for i in range(n)])
    if set(types) - {FULL, SLIDING} or len(types) != n:
        raise LlmarchError(f"mimo_v2_flash: layer_types needs {n} entries, each {FULL} or {SLIDING}")
    # the reference SGLang code's sliding_window_size counts the keys before the query (transformers adds 1)
    size = hf.get("sliding_window_size")
    window = size + 1 if size is not None else hf.get("sliding_window", 129)
    sliding = dict(sliding_window=int(window), n_kv_heads=2 * kv, attn_sinks=True,
                   **type_rope(hf, SLIDING, _DEFAULT_ROPE, _PARTIAL))
    full = type_rope(hf, FULL, _DEFAULT_ROPE, _PARTIAL)
    experts = dict(n_experts=int(hf.get("n_routed_experts", 256)),
                   experts_per_token=int(hf.get("num_experts_per_tok", 8)),
                   expert_hidden=int(hf.get("moe_intermediate_size", 2048)),
                   router_scale=float(hf.get("routed_scaling_factor") or 1.0), moe_dense_first=dense_first(hf),
                   **v3_router_fields(hf))
    bias = bool(hf.get("attention_bias", False))
    scale = hf.get("attention_value_scale", 0.707)
    return llama_like_config(
        {"rms_norm_eps": 1e-5, **hf, "attention_bias": False, "mlp_bias": False}, qkv_bias=bias, o_bias=False,
        n_kv_heads=kv, head_dim=hf.get("head_dim", 192), value_dim=hf.get("v_head_dim", 128),
        attn_value_multiplier=1.0 if scale is None else float(scale), layer_types=types,
        layer_overrides={SLIDING: sliding} if SLIDING in types else None, **full, **experts)


def _needs(cfg: ModelConfig) -> str | None:
    """What MiMo-V2-Flash's config cannot hold, as a phrase (Family.needs), or None."""
    over = (cfg.layer_overrides or {}).get(SLIDING, {})
    if cfg.layer_types is None or set(cfg.layer_types) - {FULL, SLIDING} or set(cfg.layer_overrides or {}) - {SLIDING}:
        return f"layer_types of {FULL} and {SLIDING} (the sliding ones in layer_overrides)"
    if cfg.attn_sinks or cfg.sliding_window is not None or cfg.positions != "rope" or cfg.rope_scaling != "none":
        return "full layers with default RoPE, no window and no sinks"
    if SLIDING in cfg.layer_types and (set(over) != {"sliding_window", "n_kv_heads", "attn_sinks", "rope_theta",
                                                     "rope_fraction"} or not over["attn_sinks"]
                                       or over["n_kv_heads"] != 2 * cfg.n_kv_heads):
        return "sliding layers with sinks and twice the full layers' KV heads (and their own RoPE base and fraction)"
    if cfg.o_bias or cfg.qk_norm != "none" or cfg.n_shared_experts:
        return "no o_proj bias, no QK-norm and no shared experts"
    return None


def from_config(cfg: ModelConfig) -> dict:
    check_v3_mixture(cfg)
    sliding = cfg.for_layer(cfg.layer_types.index(SLIDING)) if SLIDING in cfg.layer_types else None
    params = {kind: {"rope_type": "default", "rope_theta": c.rope_theta, "partial_rotary_factor": c.rope_fraction}
              for kind, c in ((FULL, cfg), (SLIDING, sliding or cfg))}
    k = first_dense(cfg)
    out = llama_like_hf(cfg, architectures=["MiMoV2FlashForCausalLM"], rope_parameters=params,
                        v_head_dim=cfg.value_width, attention_value_scale=cfg.attn_value_multiplier,
                        sliding_window=sliding.sliding_window if sliding else 129, layer_types=list(cfg.layer_types),
                        mlp_layer_types=["dense"] * k + ["sparse"] * (cfg.n_layers - k),
                        n_routed_experts=cfg.n_experts, num_experts_per_tok=cfg.experts_per_token,
                        moe_intermediate_size=cfg.expert_hidden, routed_scaling_factor=cfg.router_scale,
                        norm_topk_prob=cfg.router_renormalize, n_group=cfg.router_groups,
                        topk_group=cfg.router_topk_groups)
    out.pop("mlp_bias")
    return out


FAMILIES.register("mimo_v2_flash")(Family(RULES, to_config, from_config, IGNORE, stacked_experts=STACKED,
                                          needs=_needs))
