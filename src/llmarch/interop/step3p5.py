"""StepFun Step 3.7 Flash's text model (`model_type: step3p5`, transformers' Step3p7TextModel; it has no causal-LM class
of its own: the vision-language Step3p7ForConditionalGeneration, `model_type: step3p7`, puts the LM head on it, and
its checkpoints keep the text weights under model.* and lm_head, beside a vision tower that is not read). A pre-norm
decoder whose every norm, the per-head q and k norms too, is Gemma's RMSNorm with gains of 1 + w (rmsnorm_offset):
- attention with q and k normed per head before RoPE, scores times query_pre_attn_scalar^-0.5, and each head's
  output times sigmoid(x w_h), a row of `g_proj` (attn_head_gate; gating true or 'per-head'); `layer_types` of full
  and sliding-window layers, each type its own RoPE base and share of rotated dims, the sliding ones their own query
  heads (num_sliding_attention_heads), as Laguna's (laguna.layer_fields);
- the dense layers mlp_layer_types names first, then mixtures: sigmoid scores plus an expert bias (`moe.router_bias`)
  choose the experts, the chosen scores renormalised and times moe_router_scaling_factor, beside an ungated shared
  expert (`share_expert`, share_expert_dim wide); the experts stored stacked, `moe.gate_proj` and `moe.up_proj`
  (E, I, C) each.
swiglu_limits_shared and swiglu_limits bound a layer's dense or shared and its routed SwiGLUs after the activation
(ffn and expert_ffn 'swiglu_clipped', swiglu_limit and expert_swiglu_limit, on a layer type of its own). Refused:
MiniMax-M3 sparse layers, bidirectional attention, biases. The multi-token-prediction layers
(model.layers.{n_layers}.* onward) are not read, as transformers does not read them."""
from __future__ import annotations

import torch

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .laguna import FULL, SLIDING, layer_fields, layer_hf
from .llama import IGNORE
from .mapping import JOINS, Rule
from .qwen3 import RULES as QWEN3_RULES

_L, _B = "model.layers.{i}.", "blocks.{i}."
JOINS["experts_gate_up_dim1"] = (lambda parts, cfg: torch.cat(parts, dim=1), lambda t, cfg: list(t.chunk(2, dim=1)))
RULES = QWEN3_RULES + [
    Rule.of(_L + "self_attn.g_proj.weight", _B + "attn.g_proj.weight"),
    Rule.of(_L + "moe.gate.weight", _B + "mlp.router.weight"),
    Rule.of(_L + "moe.router_bias", _B + "mlp.router.expert_bias"),
    Rule.of((_L + "moe.gate_proj.weight", _L + "moe.up_proj.weight"), _B + "mlp.experts.gate_up",
            "experts_gate_up_dim1"),
    Rule.of(_L + "moe.down_proj.weight", _B + "mlp.experts.down"),
    Rule.of((_L + "share_expert.gate_proj.weight", _L + "share_expert.up_proj.weight"),
            _B + "mlp.shared.gate_up.weight"),
    Rule.of(_L + "share_expert.down_proj.weight", _B + "mlp.shared.down.weight"),
]
_ROPE = {FULL: {"rope_theta": 10000.0, "partial_rotary_factor": 1.0},
         SLIDING: {"rope_theta": 10000.0, "partial_rotary_factor": 1.0}}


def _dense_first(hf: dict, n: int) -> int:
    types = list(hf.get("mlp_layer_types") or ["sparse"] * n)
    k = types.count("dense")
    if types != ["dense"] * k + ["sparse"] * (n - k):
        raise LlmarchError(f"step3p5: mlp_layer_types {types} interleave dense and sparse layers")
    return k


def _limits(hf: dict, n: int) -> list[tuple[float, float]]:
    """Each layer's (dense and shared FFNs', routed experts') SwiGLU bound; 0: none."""
    return [tuple(float((hf.get(k) or [0.0] * n)[i] or 0.0) for k in ("swiglu_limits_shared", "swiglu_limits"))
            for i in range(n)]


def _with_limits(hf: dict, fields: dict) -> dict:
    """layer_fields' types, each layer whose SwiGLU is bounded a type of its own that clamps after the activation
    (ffn and expert_ffn 'swiglu_clipped', swiglu_limit and expert_swiglu_limit), named `<type>_swiglu<s>_<e>`
    (0.5 written 0p5)."""
    types, overrides = [], dict(fields.pop("layer_overrides") or {})
    for t, (shared, routed) in zip(fields.pop("layer_types"), _limits(hf, hf["num_hidden_layers"])):
        if shared or routed:
            name = f"{t}_swiglu{shared:g}_{routed:g}".replace(".", "p")  # a module name (its own RoPE's) has no dot
            overrides[name] = {**overrides.get(t, {}), "ffn": "swiglu_clipped" if shared else "swiglu",
                               "swiglu_limit": shared or 7.0, "expert_ffn": "swiglu_clipped" if routed else "swiglu",
                               "expert_swiglu_limit": routed or None}
            t = name
        types.append(t)
    overrides = {t: f for t, f in overrides.items() if t in types}
    return dict(fields, layer_types=types, layer_overrides=overrides or None)


def to_config(hf: dict) -> ModelConfig:
    n, heads = hf["num_hidden_layers"], hf["num_attention_heads"]
    if any(hf.get(k) for k in ("attention_bias", "mlp_bias", "use_bidirectional_attention")):
        raise LlmarchError("step3p5: biases and bidirectional attention are not supported")
    if hf.get("gating", True) not in (True, "per-head"):
        raise LlmarchError(f"step3p5: gating {hf['gating']!r} is not supported (a sigmoid gate per head)")
    swa = hf.get("num_sliding_attention_heads") or heads
    kinds = list(hf.get("layer_types") or [FULL] * n)
    width, qpas = hf.get("moe_intermediate_size", 1280), hf.get("query_pre_attn_scalar") or hf.get("head_dim", 128)
    fields = _with_limits(hf, layer_fields(
        {**hf, "num_attention_heads_per_layer": [swa if k == SLIDING else heads for k in kinds]}, _ROPE))
    return ModelConfig(
        name=hf.get("_name_or_path") or "step3p5", hf_model_type="step3p5", vocab_size=hf["vocab_size"],
        d_model=hf["hidden_size"], n_layers=n, n_heads=heads, n_kv_heads=hf.get("num_key_value_heads", 8),
        head_dim=hf.get("head_dim", 128), ffn="swiglu", ffn_hidden=hf.get("intermediate_size", 11264),
        norm="rmsnorm_offset", norm_eps=hf.get("rms_norm_eps", 1e-5), positions="rope", bias=False, norm_bias=False,
        tie_embeddings=hf.get("tie_word_embeddings", False), context_length=hf.get("max_position_embeddings", 128000),
        qk_norm="head", attn_scale=float(qpas) ** -0.5, attn_head_gate=True,
        n_experts=hf.get("n_routed_experts", hf.get("num_local_experts", 288)),
        experts_per_token=hf.get("num_experts_per_tok", 8), expert_hidden=width, n_shared_experts=1,
        shared_hidden=hf.get("share_expert_dim", 1280), moe_dense_first=_dense_first(hf, n),
        router_scoring="sigmoid", expert_bias=True, router_renormalize=True,
        router_scale=float(hf.get("moe_router_scaling_factor", 1.0)), **fields)


def _needs(cfg: ModelConfig) -> str | None:
    for i in range(cfg.n_layers):
        lc = cfg.for_layer(i)
        if lc.ffn not in ("swiglu", "swiglu_clipped") or (lc.expert_ffn or lc.ffn) not in ("swiglu", "swiglu_clipped"):
            return "SwiGLU FFNs and experts, plain or clamped after the activation (swiglu_clipped)"
    if cfg.norm != "rmsnorm_offset" or cfg.qk_norm != "head" or not cfg.attn_head_gate \
            or cfg.attn_gate_fn != "sigmoid" or cfg.attn_output_gate or cfg.bias or cfg.qkv_bias or cfg.o_bias:
        return "offset RMSNorms, a per-head QK-norm, a sigmoid gate per head, no biases and SwiGLU FFNs"
    if not cfg.n_experts or cfg.n_shared_experts != 1 or not cfg.expert_bias or cfg.router_scoring != "sigmoid" \
            or not cfg.router_renormalize or cfg.moe_period != 1 or cfg.shared_expert_gate:
        return "a mixture routed by sigmoid scores with an expert bias, renormalised, beside one ungated shared expert"
    return None


def _bound(kind: str | None, limit: float | None) -> float:
    return float(limit) if kind == "swiglu_clipped" else 0.0


def from_config(cfg: ModelConfig) -> dict:
    lcs = [cfg.for_layer(i) for i in range(cfg.n_layers)]
    limits = dict(swiglu_limits_shared=[_bound(c.ffn, c.swiglu_limit) for c in lcs],
                  swiglu_limits=[_bound(c.expert_ffn or c.ffn, c.expert_swiglu_limit or c.swiglu_limit) for c in lcs])
    layers = layer_hf(cfg)
    sliding = [h for h, k in zip(layers.pop("num_attention_heads_per_layer"), layers["layer_types"]) if k == SLIDING]
    return dict(model_type="step3p5", vocab_size=cfg.vocab_size, hidden_size=cfg.d_model,
                intermediate_size=cfg.ffn_hidden, num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
                num_key_value_heads=cfg.n_kv_heads, head_dim=cfg.head_dim, hidden_act="silu",
                max_position_embeddings=cfg.context_length, rms_norm_eps=cfg.norm_eps,
                tie_word_embeddings=cfg.tie_embeddings, num_sliding_attention_heads=sliding[0] if sliding else None,
                query_pre_attn_scalar=round(cfg.attn_scale ** -2, 6), n_routed_experts=cfg.n_experts,
                num_experts_per_tok=cfg.experts_per_token, moe_intermediate_size=cfg.expert_hidden,
                share_expert_dim=cfg.shared_hidden, moe_router_scaling_factor=cfg.router_scale,
                mlp_layer_types=["dense" if i < cfg.moe_dense_first else "sparse" for i in range(cfg.n_layers)],
                **{k: v if any(v) else None for k, v in limits.items()}, **layers)


def wrapper_config(hf: dict) -> ModelConfig:
    return to_config({**(hf.get("text_config") or {}), "_name_or_path": hf.get("_name_or_path")})


def no_export(cfg: ModelConfig) -> dict:
    raise LlmarchError("llmarch holds step3p7's text model only; export it with hf_model_type='step3p5'")


FAMILIES.register("step3p5")(Family(RULES, to_config, from_config, IGNORE, needs=_needs, mtp=True))
FAMILIES.register("step3p7")(Family(RULES, wrapper_config, no_export,
                                    IGNORE + (r"^vision_model\.", r"^vit_large_projector\."), needs=_needs, mtp=True))
