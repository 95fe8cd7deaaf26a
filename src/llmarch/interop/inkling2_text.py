"""Thinking Machines' Inkling 2, its text model (`model_type: inkling2_text`, transformers' Inkling2ForCausalLM; also
read from the multimodal `inkling2`, Inkling2ForConditionalGeneration, whose vision tower is not read). A decoder
without RoPE whose stream is a stack of block sums (transformers' module names below; the rules read the original
checkpoint names, which transformers writes back):
- the token embeddings through an RMSNorm (`embed_tokens.embed_norm`: embed_norm);
- block attention residuals (attn_residual_block = n_layers_per_attn_res_block; layers/depth_attention.py): every
  sublayer and the final norm read a softmax attention over the normalised block sums with a learned query
  (`attention_input`, `mlp_input`, `final_input`); the full layers read three, their queries', keys' and values'
  inputs, each through its own RMSNorm (`q_`, `k_`, `v_input_layernorm`: attn_split_inputs);
- attention 'relative_logits': queries through a learned gain per head and an L2 clip (qk_norm 'l2_clip' at
  qk_l2_clip_threshold), keys through a Canon layer and the clip, values through a Canon layer and an RMSNorm without
  gain (v_norm); scores q.k / sqrt(head_dim) plus the bias that each query's relative state, through a gain and its
  own L2 clip (rel_logits_clip), mixes from a bank of profiles over distances; a sink logit per head and token
  (`sink_proj`: attn_sink_proj); the output gated by sigmoid of a projection of the layer's query input
  (`o_proj.gate_proj`, held as attn_output_gate's rows beside each head's query rows), then `o_proj.linear`;
- `hybrid_sliding` layers attend over sliding_window_size keys with their own heads (swa_*) and a bias over the
  window; `hybrid` layers over every key with a bias over rel_extent, a query temperature
  1 + alpha ln(max((p + 1) / n_floor, 1)) on queries and relative states (attn_temp_form 'ratio'), and dynamic key
  and value convolutions, whose taps add per-token ones projected from their input (canon_kv_dynamic);
- Canon layers with outputs divided by sqrt(K + 1) (canon_scaled) on keys, values and each sublayer's output;
- a mixture in every layer: sigmoid scores plus an expert bias choose the experts, their scores renormalised times
  route_scale; experts c_g tanh(g / c_g) sigmoid(g) * c_u tanh(u / c_u) (ffn 'swiglu_softcapped');
- an untied head over unpadded_vocab_size rows (head_vocab), logits soft-capped (final_softcap)."""
from __future__ import annotations

import torch

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .mapping import JOINS, Rule, _join_gated_q, _split_gated_q

_P, _A, _M, _B = "model.llm.", "model.llm.layers.{i}.", "model.llm.layers.{i}.mlp.", "blocks.{i}."
_T = _A + "attn."
FULL, SLIDING = "hybrid", "hybrid_sliding"


def _join_taps(parts: list[torch.Tensor], cfg) -> torch.Tensor:
    """A dynamic convolution's static_w (K, C), row j the tap j tokens back -> our Canon layout (C, 1, K), the
    current token's tap last."""
    return parts[0].flip(0).t().unsqueeze(1)


def _split_taps(t: torch.Tensor, cfg) -> list[torch.Tensor]:
    return [t[:, 0].t().flip(0)]


def _join_unembed(parts: list[torch.Tensor], cfg) -> torch.Tensor:
    """The checkpoint's unembed (vocab_size, C), padded -> our head's head_vocab rows (transformers'
    Inkling2UnpadVocab); written back with zero rows."""
    return parts[0][:cfg.head_vocab or cfg.vocab_size]


def _split_unembed(t: torch.Tensor, cfg) -> list[torch.Tensor]:
    return [torch.cat([t, t.new_zeros(cfg.vocab_size - t.shape[0], *t.shape[1:])])]


def _gated_q(kind: str):
    """wq_du, gate_attn, wk_dv, wv_dv of a layer of type `kind` (whose heads size the rows) <-> our qkv_proj."""
    def layer_cfg(cfg):
        return cfg.for_layer(cfg.layer_types.index(kind))
    return (lambda parts, cfg: _join_gated_q(parts, layer_cfg(cfg)),
            lambda t, cfg: _split_gated_q(t, layer_cfg(cfg)))


JOINS["inkling2_taps"] = (_join_taps, _split_taps)
JOINS["inkling2_unembed"] = (_join_unembed, _split_unembed)
JOINS["inkling2_qkv_" + FULL] = _gated_q(FULL)
JOINS["inkling2_qkv_" + SLIDING] = _gated_q(SLIDING)

# the original checkpoints' names, which transformers writes back on save (its conversion_mapping.py: inkling2_text)
RULES = [
    Rule.of(_P + "embed.weight", "embed.weight"),
    Rule.of(_P + "embed_norm.weight", "embed_norm.weight"),
    Rule.of(_T + "q_l2_clip.scale", _B + "attn.q_norm.weight"),
    Rule.of(_T + "wo_ud.weight", _B + "attn.o_proj.weight"),
    Rule.of(_T + "attn_sink_proj.weight", _B + "attn.sink_proj.weight"),
    Rule.of(_T + "wr_du.weight", _B + "attn.r_proj.weight"),
    Rule.of(_T + "rel_logits_proj.proj", _B + "attn.rel.weight"),
    Rule.of(_T + "rel_l2_clip.scale", _B + "attn.r_norm.weight"),
    *[Rule.of(_T + f"{n}_sconv.weight_proj", _B + f"attn.{n}_canon.proj.weight") for n in "kv"],
    Rule.of(_P + "attn_res.mlp_queries.{i}", _B + "mlp_depth.query"),
    Rule.of(_A + "k_input_norm.weight", _B + "ln1_k.weight"),
    Rule.of(_A + "v_input_norm.weight", _B + "ln1_v.weight"),
    Rule.of(_A + "mlp_norm.weight", _B + "ln2.weight"),
    Rule.of(_A + "attn_sconv.weight", _B + "attn_canon.weight"),
    Rule.of(_A + "mlp_sconv.weight", _B + "mlp_canon.weight"),
    Rule.of(_M + "gate.weight", _B + "mlp.router.weight"),
    Rule.of(_M + "gate.bias", _B + "mlp.router.expert_bias"),
    Rule.of(_M + "experts.w13_weight", _B + "mlp.experts.gate_up", "interleaved"),
    Rule.of(_M + "experts.w2_weight", _B + "mlp.experts.down"),
    Rule.of(_P + "attn_res.output_query", "final_depth.query"),
    Rule.of(_P + "norm.weight", "ln_final.weight"),
    Rule.of(_P + "unembed.weight", "lm_head.weight", "inkling2_unembed"),
]
# transformers' names of the stacked experts (PEFT's target_parameters)
STACKED = [Rule.of("model.layers.{i}.mlp.experts.gate_up_proj", _B + "mlp.experts.gate_up"),
           Rule.of("model.layers.{i}.mlp.experts.down_proj", _B + "mlp.experts.down")]


def _layer_rules(cfg: ModelConfig) -> list[Rule]:
    """What a layer's type names differently: its fused q|gate|k|v rows (sized by its heads), its first norm, its key
    and value convolutions (static in sliding layers, dynamic in full ones); and the attention residuals' queries of
    layers 1.., stored from index 0."""
    out = []
    for i, kind in enumerate(cfg.layer_types):
        a, b = f"{_P}layers.{i}.attn.", f"blocks.{i}."
        out.append(Rule.of((a + "wq_du.weight", a + "gate_attn.weight", a + "wk_dv.weight", a + "wv_dv.weight"),
                           b + "attn.qkv_proj.weight", "inkling2_qkv_" + kind))
        norm = "attn_norm" if kind == SLIDING else "q_input_norm"
        out.append(Rule.of(f"{_P}layers.{i}.{norm}.weight", b + "ln1.weight"))
        for n in "kv":
            out.append(Rule.of(a + f"{n}_sconv.weight", b + f"attn.{n}_canon.weight") if kind == SLIDING else
                       Rule.of(a + f"{n}_sconv.static_w", b + f"attn.{n}_canon.weight", "inkling2_taps"))
        if i:
            out.append(Rule.of(f"{_P}attn_res.attn_queries.{i - 1}", b + "attn_depth.query"))
    return out


def to_config(hf: dict) -> ModelConfig:
    if hf.get("quantization_config"):  # the published MXFP8 experts (w13_weight_scale ...), kept quantized
        raise LlmarchError(f"inkling2_text: quantized checkpoints (quantization_config "
                           f"{hf['quantization_config'].get('quant_method', '?')!r}) are not supported; read a "
                           "full-precision one")
    n = hf["num_hidden_layers"]
    types = hf.get("layer_types") or [FULL if (i + 1) % 6 == 0 else SLIDING for i in range(n)]
    if set(types) - {FULL, SLIDING}:
        raise LlmarchError(f"inkling2_text: layer_types must be {FULL!r} or {SLIDING!r}, got {sorted(set(types))}")
    if hf.get("hidden_act", "silu") != "silu" or hf.get("scoring_func", "sigmoid") != "sigmoid":
        raise LlmarchError(f"inkling2_text: experts of hidden_act 'silu' routed by scoring_func 'sigmoid' only, got "
                           f"{hf.get('hidden_act')!r} and {hf.get('scoring_func')!r}")
    head_dim, swa_dim = hf.get("head_dim", 128), hf.get("swa_head_dim", 128)
    window = hf.get("sliding_window_size", 1024)
    vocab, rows = hf["vocab_size"], hf.get("unpadded_vocab_size", 200058)
    kernel = hf.get("conv_kernel_size", 4)
    sliding = dict(n_heads=hf.get("swa_num_attention_heads", 48), n_kv_heads=hf.get("swa_num_key_value_heads", 8),
                   head_dim=swa_dim, attn_scale=swa_dim ** -0.5, sliding_window=window, rel_logits_extent=window,
                   attn_temp_scale=0.0, canon_kv_dynamic=False, attn_split_inputs=False)
    return ModelConfig(
        name=hf.get("_name_or_path") or hf["model_type"], hf_model_type=hf["model_type"], vocab_size=vocab,
        head_vocab=None if rows in (None, vocab) else rows, d_model=hf["hidden_size"], n_layers=n,
        n_heads=hf.get("num_attention_heads", 48), n_kv_heads=hf.get("num_key_value_heads", 8), head_dim=head_dim,
        attn_scale=head_dim ** -0.5, ffn="swiglu_softcapped", swiglu_gate_cap=float(hf.get("mlp_gate_softcap", 4.0)),
        swiglu_up_cap=float(hf.get("mlp_up_softcap", 25.0)), ffn_hidden=hf.get("moe_intermediate_size", 2304),
        norm="rmsnorm", norm_eps=hf.get("rms_norm_eps", 1e-6), positions="none", bias=False, norm_bias=False,
        tie_embeddings=False, context_length=hf.get("max_position_embeddings", 1048576), embed_norm=True,
        qk_norm="l2_clip", qk_clip=float(hf.get("qk_l2_clip_threshold", 22.627416997969522)), v_norm=True,
        attention="relative_logits", rel_logits_dim=hf.get("d_rel", 16), rel_logits_extent=hf.get("rel_extent", 1024),
        rel_logits_clip=float(hf.get("rel_l2_clip_threshold", 8.0)), attn_sink_proj=True, attn_output_gate=True,
        attn_temp_scale=float(hf.get("log_scaling_alpha", 0.1)), attn_temp_floor=int(hf.get("log_scaling_n_floor",
                                                                                              128000)),
        attn_temp_shift=1, attn_temp_form="ratio", canon_kv=kernel, canon_out=kernel, canon_scaled=True,
        canon_kv_dynamic=True, attn_split_inputs=True,
        attn_residual_block=hf.get("n_layers_per_attn_res_block", 6),
        n_experts=hf.get("n_routed_experts", 384), experts_per_token=hf.get("num_experts_per_tok", 8),
        expert_hidden=hf.get("moe_intermediate_size", 2304), n_shared_experts=0, router_scoring="sigmoid",
        expert_bias=True, router_renormalize=True, router_scale=float(hf.get("route_scale", 8.0)),
        final_softcap=hf.get("final_logit_softcapping", 30.0),
        layer_types=list(types), layer_overrides={SLIDING: sliding} if SLIDING in types else None)


def _needs(cfg: ModelConfig) -> str | None:
    if cfg.recurrence != "none":  # inkling2_loop_text.py's loops
        return "each layer run once (recurrence 'none')"
    return text_needs(cfg)


def text_needs(cfg: ModelConfig) -> str | None:
    """What Inkling 2's layers need, looped or not."""
    if cfg.attention != "relative_logits" or not cfg.embed_norm or cfg.qk_norm != "l2_clip" or not cfg.v_norm \
            or cfg.bias or cfg.tie_embeddings or not cfg.canon_kv or cfg.canon_kv != cfg.canon_out \
            or not cfg.canon_scaled or cfg.layer_types is None or set(cfg.layer_types) - {FULL, SLIDING} \
            or cfg.attn_temp_form != "ratio" or cfg.attn_temp_shift != 1 or not cfg.attn_residual_block \
            or not cfg.attn_sink_proj or not cfg.attn_output_gate or cfg.rel_logits_clip is None \
            or cfg.ffn != "swiglu_softcapped" or cfg.final_softcap is None:
        return ("attention 'relative_logits' with an embedding norm, L2-clipped queries, keys and relative states, "
                "normed values, per-token sinks, an output gate, no biases, an untied soft-capped head, scaled Canon "
                "layers of one kernel, block attention residuals, softcapped SwiGLU experts and layer types hybrid "
                "and hybrid_sliding")
    for i in range(cfg.n_layers):
        lc, sliding = cfg.for_layer(i), cfg.layer_types[i] == SLIDING
        if lc.attn_scale != lc.head_dim ** -0.5 or (lc.sliding_window is not None) != sliding \
                or lc.canon_kv_dynamic == sliding or lc.attn_split_inputs == sliding or sliding and (
                lc.rel_logits_extent != lc.sliding_window or lc.attn_temp_scale):
            return ("scores scaled by 1/sqrt(head_dim), windows, static convolutions and one input on the "
                    "hybrid_sliding layers only, each with a bias over its window and no query temperature")
    if not cfg.n_experts or cfg.n_shared_experts or cfg.moe_dense_first or cfg.moe_period != 1 \
            or cfg.router_scoring != "sigmoid" or not cfg.expert_bias or not cfg.router_renormalize:
        return "a mixture in every layer, sigmoid scores renormalised, an expert bias, no shared experts"
    return None


def from_config(cfg: ModelConfig) -> dict:
    swa = cfg.for_layer(cfg.layer_types.index(SLIDING)) if SLIDING in cfg.layer_types else cfg.replace(
        layer_types=None, layer_overrides=None, sliding_window=1024, rel_logits_extent=1024)
    return dict(
        model_type="inkling2_text", architectures=["Inkling2ForCausalLM"], vocab_size=cfg.vocab_size,
        unpadded_vocab_size=cfg.head_vocab or cfg.vocab_size, hidden_size=cfg.d_model,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads,
        head_dim=cfg.head_dim, swa_num_attention_heads=swa.n_heads, swa_num_key_value_heads=swa.n_kv_heads,
        swa_head_dim=swa.head_dim, sliding_window_size=swa.sliding_window, d_rel=cfg.rel_logits_dim,
        rel_extent=cfg.rel_logits_extent, log_scaling_n_floor=cfg.attn_temp_floor,
        log_scaling_alpha=cfg.attn_temp_scale, layer_types=list(cfg.layer_types),
        max_position_embeddings=cfg.context_length, rms_norm_eps=cfg.norm_eps, conv_kernel_size=cfg.canon_kv,
        hidden_act="silu", moe_intermediate_size=cfg.expert_hidden, n_routed_experts=cfg.n_experts,
        num_experts_per_tok=cfg.experts_per_token, route_scale=cfg.router_scale, qk_l2_clip_threshold=cfg.qk_clip,
        rel_l2_clip_threshold=cfg.rel_logits_clip, n_layers_per_attn_res_block=cfg.attn_residual_block,
        mlp_gate_softcap=cfg.swiglu_gate_cap, mlp_up_softcap=cfg.swiglu_up_cap,
        final_logit_softcapping=cfg.final_softcap, scoring_func="sigmoid", tie_word_embeddings=False)


def wrapper_config(hf: dict) -> ModelConfig:
    """The multimodal `inkling2` (Inkling2ForConditionalGeneration): its text_config, read as inkling2_text."""
    return to_config({**(hf.get("text_config") or {}), "model_type": "inkling2_text",
                      "_name_or_path": hf.get("_name_or_path"), "quantization_config": hf.get("quantization_config")})


def _wrapper_export(cfg: ModelConfig) -> dict:
    raise LlmarchError("llmarch holds inkling2's text model only; export it with hf_model_type='inkling2_text'")


FAMILIES.register("inkling2_text")(Family(RULES, to_config, from_config, stacked_experts=STACKED, needs=_needs,
                                          more_rules=_layer_rules))
# the multimodal checkpoint stores its text model under the same names (model.llm.), its vision tower under
# model.visual., which is not read
FAMILIES.register("inkling2")(Family(RULES, wrapper_config, _wrapper_export, (r"^model\.visual\.",),
                                     stacked_experts=STACKED, needs=_needs, more_rules=_layer_rules))
