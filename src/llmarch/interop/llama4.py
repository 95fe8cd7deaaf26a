"""Llama 4 (`model_type: llama4_text`, Llama4ForCausalLM, and the text model of `llama4`,
Llama4ForConditionalGeneration: Scout, Maverick; Meta 2025, "The Llama 4 herd"). LLaMA's blocks with
- RoPE on three layers of four and none on the fourth (`no_rope_layers[i]` 1 where layer i rotates; by default 0
  where (i + 1) % no_rope_layer_interval == 0: Meta's "iRoPE"). RoPE turns adjacent dims (2j, 2j + 1) as one
  complex number, so q and k rows are reordered to our halves (mapping layout "rope_pairs"); a NoPE layer's rows
  move too, which leaves its scores as they are;
- on the RoPE layers, attention within chunks of attention_chunk_size positions (layer_types "chunked_attention";
  attention kind "chunked") and the rotated queries and keys of each head divided by their RMS, without a gain
  (use_qk_norm; qk_norm "rms_after_rope", eps rms_norm_eps);
- on the NoPE layers, full causal attention with the queries scaled by 1 + attn_scale * ln(1 + floor((p + 1) /
  floor_scale)) (attn_temperature_tuning; attn_temp_scale, attn_temp_floor);
- FFNs that are, on the layers of moe_layers (every interleave_moe_layer_step-th), num_local_experts SwiGLU experts
  of intermediate_size, chosen top-k (top-1) by raw logit, each weighted by the sigmoid of its logit, the weight
  scaling the expert's input (expert_input_weighted), plus a shared SwiGLU expert of the same width on every
  token; elsewhere a dense SwiGLU of intermediate_size_mlp. The experts are stored fused, gate_up_proj (E, C, 2I),
  gate half first, and down_proj (E, I, C): ours transposed (mapping layout "experts_transposed").
Per layer these are our layer types: the HF layer type, with "_nope" where the layer has no RoPE. The text model
of Llama4ForConditionalGeneration and its images: llama4_vision.py."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf
from .mapping import Rule, with_rope_pairs
from .mixtral import moe_fields, moe_hf

_L = "model.layers.{i}.feed_forward."
_SHARED = _L + "shared_expert."
RULES = with_rope_pairs([r for r in LLAMA_RULES if ".mlp." not in r.ours]) + [
    Rule.of((_L + "gate_proj.weight", _L + "up_proj.weight"), "blocks.{i}.mlp.gate_up.weight"),
    Rule.of(_L + "down_proj.weight", "blocks.{i}.mlp.down.weight"),
    Rule.of(_L + "router.weight", "blocks.{i}.mlp.router.weight"),
    Rule.of(_L + "experts.gate_up_proj", "blocks.{i}.mlp.experts.gate_up", "experts_transposed"),
    Rule.of(_L + "experts.down_proj", "blocks.{i}.mlp.experts.down", "experts_transposed"),
    Rule.of((_SHARED + "gate_proj.weight", _SHARED + "up_proj.weight"), "blocks.{i}.mlp.shared.gate_up.weight"),
    Rule.of(_SHARED + "down_proj.weight", "blocks.{i}.mlp.shared.down.weight"),
]
CHUNKED, FULL, NOPE = "chunked_attention", "full_attention", "_nope"
# transformers' Llama4TextConfig defaults, for the fields a config.json may leave out
DEFAULTS = dict(vocab_size=202048, hidden_size=5120, intermediate_size=8192, intermediate_size_mlp=16384,
                num_hidden_layers=48, num_attention_heads=40, num_key_value_heads=8, head_dim=128, hidden_act="silu",
                max_position_embeddings=131072, rms_norm_eps=1e-5, tie_word_embeddings=False, num_experts_per_tok=1,
                num_local_experts=16, interleave_moe_layer_step=1, use_qk_norm=True, no_rope_layer_interval=4,
                attention_chunk_size=8192, attn_temperature_tuning=True, floor_scale=8192, attn_scale=0.1)


def _moe_period(moe_layers: list[int], n: int) -> dict:
    """moe_layers as our moe_period and moe_offset (every step-th layer from the first)."""
    first = moe_layers[0]
    step = moe_layers[1] - first if len(moe_layers) > 1 else n
    if not 0 <= first < step or list(moe_layers) != list(range(first, n, step)):
        raise LlmarchError(f"llama4_text: moe_layers {moe_layers} are not every k-th layer from one of the first k")
    return dict(moe_period=step, moe_offset=first)


def _layer_types(hf: dict, n: int) -> tuple[list[str], dict]:
    """Each layer's type (HF's layer type, + _nope without RoPE) and what each type changes of the config."""
    rope = hf.get("no_rope_layers") or [int((i + 1) % hf["no_rope_layer_interval"] != 0) for i in range(n)]
    chunk = hf.get("attention_chunk_size")
    kinds = hf.get("layer_types") or [CHUNKED if r and chunk is not None else FULL for r in rope]
    types = [k + ("" if r else NOPE) for k, r in zip(kinds, rope)]
    overrides = {}
    for t in dict.fromkeys(types):
        fields = {"attention": "chunked"} if t.startswith(CHUNKED) else {}
        if t.endswith(NOPE):  # temperature tuning on the NoPE layers only (transformers' Llama4TextAttention)
            fields.update(positions="none", attn_temp_scale=float(hf["attn_scale"]) if hf["attn_temperature_tuning"]
                          else 0.0)
        elif hf["use_qk_norm"]:  # and the QK-norm on the RoPE layers only
            fields["qk_norm"] = "rms_after_rope"
        overrides[t] = fields
    return types, {t: f for t, f in overrides.items() if f}


def to_config(hf: dict) -> ModelConfig:
    hf = {**DEFAULTS, **{k: v for k, v in hf.items() if v is not None}}
    if hf.get("attention_bias"):  # biased q, k, v, o with unbiased FFNs: llmarch ties o_proj's bias to the FFN's
        raise LlmarchError("llama4_text: attention_bias=true is not supported")
    if "rope_parameters" not in hf and "rope_theta" not in hf:
        hf["rope_theta"] = 500000.0  # Llama4TextConfig.default_theta
    n = hf["num_hidden_layers"]
    types, overrides = _layer_types(hf, n)
    moe_layers = hf.get("moe_layers")
    if moe_layers is None:
        step = int(hf["interleave_moe_layer_step"])
        moe_layers = list(range(step - 1, n, step))
    moe = {}
    if moe_layers:
        moe = dict(**moe_fields(hf), **_moe_period(moe_layers, n), expert_hidden=hf["intermediate_size"],
                   n_shared_experts=1, router_scoring="sigmoid", router_renormalize=False, expert_input_weighted=True)
    return llama_like_config({**hf, "intermediate_size": hf["intermediate_size_mlp"]},
                             attention_chunk=int(hf["attention_chunk_size"] or DEFAULTS["attention_chunk_size"]),
                             attn_temp_floor=int(hf["floor_scale"]), layer_types=types,
                             layer_overrides=overrides or None, **moe)


def _check_exportable(cfg: ModelConfig, layers: list[ModelConfig]) -> None:
    if cfg.ffn != "swiglu" or cfg.norm != "rmsnorm" or cfg.bias or cfg.qkv_bias or cfg.norm_placement != "pre" \
            or cfg.block != "sequential" or cfg.positions != "rope" or cfg.rope_fraction != 1.0:
        raise LlmarchError("model_type llama4_text has pre-norm RMSNorm blocks, SwiGLU FFNs, no biases and RoPE on "
                           "every dim of its RoPE layers")
    if cfg.n_experts and not (cfg.n_shared_experts == 1 and cfg.shared_hidden == cfg.expert_hidden
                              and cfg.router_scoring == "sigmoid" and not cfg.router_renormalize
                              and cfg.expert_input_weighted and cfg.router_scale == 1.0 and not cfg.expert_bias
                              and cfg.router_groups == 1 and cfg.capacity_factor is None
                              and cfg.expert_capacity is None and not cfg.moe_dense_first and not cfg.router_bias):
        raise LlmarchError("model_type llama4_text routes by the sigmoid of the chosen logits, unnormalised, "
                           "scaling the experts' inputs, beside one shared expert as wide as an expert")
    rope = [c for c in layers if c.positions == "rope"]
    nope = [c for c in layers if c.positions != "rope"]
    if len({c.qk_norm for c in rope}) > 1 or any(c.qk_norm not in ("none", "rms_after_rope") for c in rope) \
            or any(c.qk_norm != "none" or c.positions != "none" for c in nope) or any(c.attn_temp_scale for c in rope) \
            or len({c.attn_temp_scale for c in nope}) > 1 \
            or any(c.attention not in ("full", "chunked") or c.n_experts != cfg.n_experts for c in layers):
        raise LlmarchError("model_type llama4_text has one QK-norm (rms_after_rope or none) on its RoPE layers, one "
                           "attention temperature on its NoPE layers, and full or chunked attention")


def from_config(cfg: ModelConfig) -> dict:
    layers = [cfg.for_layer(i) for i in range(cfg.n_layers)]
    _check_exportable(cfg, layers)
    chunked = any(c.attention == "chunked" for c in layers)
    temp = next((c.attn_temp_scale for c in layers if c.positions != "rope"), 0.0)
    moe = dict(moe_hf(cfg), intermediate_size=cfg.expert_hidden) if cfg.n_experts else dict(num_local_experts=0)
    out = llama_like_hf(cfg, architectures=["Llama4ForCausalLM"], intermediate_size_mlp=cfg.ffn_hidden,
                        no_rope_layers=[int(c.positions == "rope") for c in layers],
                        layer_types=[CHUNKED if c.attention == "chunked" else FULL for c in layers],
                        attention_chunk_size=cfg.attention_chunk if chunked else None,
                        use_qk_norm=any(c.qk_norm == "rms_after_rope" for c in layers),
                        attn_temperature_tuning=bool(temp), attn_scale=temp or DEFAULTS["attn_scale"],
                        floor_scale=cfg.attn_temp_floor, interleave_moe_layer_step=cfg.moe_period,
                        moe_layers=[i for i in range(cfg.n_layers) if cfg.is_moe_layer(i)], **moe)
    out.pop("mlp_bias")
    return out


FAMILIES.register("llama4_text")(Family(RULES, to_config, from_config, IGNORE))
