"""Thinking Machines' Inkling, its text model (`model_type: inkling_text`, transformers' InklingForCausalLM; the
multimodal wrapper's vision and audio towers are not read). A pre-norm decoder without RoPE:
- the token embeddings through an RMSNorm (`embed_tokens.embed_norm`: embed_norm);
- attention 'relative_logits': per-head RMSNorm on q and k, scores q.k / head_dim plus a bias that each query's
  relative state (r_proj) mixes from a learned bank of profiles over key distances (`rel_logits_proj.proj`); the
  layers `layer_types` names `hybrid_sliding` attend over sliding_window_size keys with their own heads (swa_*) and a
  bias over the window, the `hybrid` ones over every key with a bias over rel_extent and, with log_scaling_n_floor,
  a query temperature 1 + alpha ln(max((p + 1) / n_floor, 1)) (attn_temp_form 'ratio');
- Canon layers (canon_kv, canon_out): causal depthwise convolutions with a residual on the projected keys and values
  (`k_sconv`, `v_sconv`) and on each sublayer's output (`attn_sconv`, `mlp_sconv`);
- dense SwiGLU layers (the first, by mlp_layer_types) with a learned output scalar (`mlp.global_scale`), the rest a
  mixture: sigmoid scores plus an expert bias choose the experts; the chosen and the shared experts' sigmoid scores,
  renormalised together, times route_scale and a learned scalar (`gate.global_scale`), weigh each (router_shared_sink);
- the final hidden states divided by logits_mup_width_multiplier before an untied head (logit_divisor).
The multi-token-prediction layers (`model.mtp.`) are not read, as transformers does not read them."""
from __future__ import annotations

import torch

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .mapping import JOINS, Rule

_L, _A, _M, _B = "model.layers.{i}.", "model.layers.{i}.self_attn.", "model.layers.{i}.mlp.", "blocks.{i}."
FULL, SLIDING = "hybrid", "hybrid_sliding"


def _join_shared_glu(parts: list[torch.Tensor], cfg) -> torch.Tensor:
    """The shared experts' gate_proj and up_proj (S, I, C) each -> our fused gate_up rows (gates of every shared
    expert, then ups)."""
    return torch.cat([p.flatten(0, 1) for p in parts])


def _split_shared_glu(t: torch.Tensor, cfg) -> list[torch.Tensor]:
    return [p.unflatten(0, (cfg.n_shared_experts, -1)) for p in t.chunk(2)]


def _join_shared_down(parts: list[torch.Tensor], cfg) -> torch.Tensor:
    """down_proj (S, C, I) -> our fused down (C, S * I)."""
    return parts[0].permute(1, 0, 2).flatten(1)


def _split_shared_down(t: torch.Tensor, cfg) -> list[torch.Tensor]:
    return [t.unflatten(1, (cfg.n_shared_experts, -1)).permute(1, 0, 2)]


JOINS["shared_stacked_glu"] = (_join_shared_glu, _split_shared_glu)
JOINS["shared_stacked_down"] = (_join_shared_down, _split_shared_down)

RULES = [
    Rule.of("model.embed_tokens.weight", "embed.weight"),
    Rule.of("model.embed_tokens.embed_norm.weight", "embed_norm.weight"),
    Rule.of(tuple(_A + f"{p}_proj.weight" for p in "qkv"), _B + "attn.qkv_proj.weight"),
    Rule.of(_A + "o_proj.weight", _B + "attn.o_proj.weight"),
    Rule.of(_A + "r_proj.weight", _B + "attn.r_proj.weight"),
    Rule.of(_A + "rel_logits_proj.proj", _B + "attn.rel.weight"),
    *[Rule.of(_A + f"{n}_norm.weight", _B + f"attn.{n}_norm.weight") for n in "qk"],
    *[Rule.of(_A + f"{n}_sconv.conv1d.weight", _B + f"attn.{n}_canon.weight") for n in "kv"],
    *[Rule.of(_L + f"{n}_sconv.conv1d.weight", _B + f"{n}_canon.weight") for n in ("attn", "mlp")],
    Rule.of(_L + "input_layernorm.weight", _B + "ln1.weight"),
    Rule.of(_L + "post_attention_layernorm.weight", _B + "ln2.weight"),
    Rule.of((_M + "gate_proj.weight", _M + "up_proj.weight"), _B + "mlp.gate_up.weight"),
    Rule.of(_M + "down_proj.weight", _B + "mlp.down.weight"),
    Rule.of(_M + "global_scale", _B + "mlp.gain"),
    Rule.of(_M + "gate.weight", _B + "mlp.router.weight"),
    Rule.of(_M + "gate.global_scale", _B + "mlp.router.gain"),
    Rule.of(_M + "gate.e_score_correction_bias", _B + "mlp.router.expert_bias"),
    Rule.of(_M + "experts.gate_up_proj", _B + "mlp.experts.gate_up"),
    Rule.of(_M + "experts.down_proj", _B + "mlp.experts.down"),
    Rule.of((_M + "shared_experts.gate_proj", _M + "shared_experts.up_proj"), _B + "mlp.shared.gate_up.weight",
            "shared_stacked_glu"),
    Rule.of(_M + "shared_experts.down_proj", _B + "mlp.shared.down.weight", "shared_stacked_down"),
    Rule.of("model.norm.weight", "ln_final.weight"),
    Rule.of("lm_head.weight", "lm_head.weight"),
]
STACKED = [Rule.of(_M + "experts.gate_up_proj", _B + "mlp.experts.gate_up"),
           Rule.of(_M + "experts.down_proj", _B + "mlp.experts.down")]


def _dense_first(hf: dict, n: int) -> int:
    """How many leading layers are dense: mlp_layer_types must be dense ones, then sparse ones."""
    types = hf.get("mlp_layer_types") or ["dense"] * int(hf.get("dense_mlp_idx", 0)) + ["sparse"] * n
    types = list(types)[:n]
    k = types.count("dense")
    if types != ["dense"] * k + ["sparse"] * (n - k):
        raise LlmarchError(f"inkling_text: mlp_layer_types {types} interleave dense and sparse layers; llmarch reads "
                           "dense layers first, then mixture layers")
    return k


def to_config(hf: dict) -> ModelConfig:
    n, heads = hf["num_hidden_layers"], hf.get("num_attention_heads", 64)
    if hf.get("unpadded_vocab_size") not in (None, hf["vocab_size"]):
        raise LlmarchError("inkling_text: unpadded_vocab_size (logits cut below vocab_size) is not supported")
    if hf.get("shared_expert_sink", True) is False or not hf.get("n_shared_experts", 2):
        raise LlmarchError("inkling_text: transformers' router always weighs shared experts as a sink; "
                           "shared_expert_sink=False or n_shared_experts=0 is not supported")
    local = hf.get("local_layer_ids")
    types = hf.get("layer_types") or [SLIDING if (i in local if local is not None else (i + 1) % 6) else FULL
                                      for i in range(n)]
    if set(types) - {FULL, SLIDING}:
        raise LlmarchError(f"inkling_text: layer_types must be {FULL!r} or {SLIDING!r}, got {sorted(set(types))}")
    if hf.get("dense_intermediate_size") is not None:  # the checkpoints' naming (configuration_inkling.py)
        hf = {**hf, "moe_intermediate_size": hf["intermediate_size"],
              "intermediate_size": hf["dense_intermediate_size"]}
    head_dim, swa_dim, window = hf.get("head_dim", 128), hf.get("swa_head_dim", 128), hf.get("sliding_window_size", 512)
    floor = hf.get("log_scaling_n_floor")
    kernel = hf.get("conv_kernel_size", hf.get("sconv_kernel_size", 4))
    width, shared = hf.get("moe_intermediate_size", 3072), hf.get("n_shared_experts", 2)
    overrides = {FULL: {}, SLIDING: dict(
        n_heads=hf.get("swa_num_attention_heads", 64), n_kv_heads=hf.get("swa_num_key_value_heads", 16),
        head_dim=swa_dim, attn_scale=1.0 / swa_dim, sliding_window=window, rel_logits_extent=window,
        attn_temp_scale=0.0)}
    return ModelConfig(
        name=hf.get("_name_or_path") or hf["model_type"], hf_model_type=hf["model_type"], vocab_size=hf["vocab_size"],
        d_model=hf["hidden_size"], n_layers=n, n_heads=heads, n_kv_heads=hf.get("num_key_value_heads", 8),
        head_dim=head_dim, attn_scale=1.0 / head_dim, ffn="swiglu" if hf.get("hidden_act", "silu") == "silu" else
        hf["hidden_act"], ffn_hidden=hf.get("intermediate_size", 24576), norm="rmsnorm",
        norm_eps=hf.get("rms_norm_eps", 1e-6), positions="none", bias=False, norm_bias=False, tie_embeddings=False,
        context_length=hf.get("max_position_embeddings", 131072), embed_norm=True, qk_norm="head",
        attention="relative_logits", rel_logits_dim=hf.get("d_rel", 16), rel_logits_extent=hf.get("rel_extent", 1024),
        attn_temp_scale=float(hf.get("log_scaling_alpha", 0.1)) if floor is not None else 0.0,
        attn_temp_floor=int(floor or 8192), attn_temp_shift=1, attn_temp_form="ratio",
        canon_kv=kernel, canon_out=kernel, ffn_learned_scale=True,
        n_experts=hf.get("n_routed_experts", hf.get("num_local_experts", 256)),
        experts_per_token=hf.get("num_experts_per_tok", 6), expert_hidden=width, n_shared_experts=shared,
        shared_hidden=shared * width, moe_dense_first=_dense_first(hf, n), router_scoring="sigmoid",
        expert_bias=True, router_renormalize=True, router_scale=float(hf.get("route_scale", 8.0)),
        router_shared_sink=True, router_learned_scale=True,
        logit_divisor=float(hf.get("logits_mup_width_multiplier", 24.0)),
        layer_types=list(types), layer_overrides={t: f for t, f in overrides.items() if t in types and f} or None)


def _needs(cfg: ModelConfig) -> str | None:
    if cfg.attention != "relative_logits" or not cfg.embed_norm or cfg.qk_norm != "head" or cfg.bias \
            or cfg.tie_embeddings or not cfg.canon_kv or cfg.canon_kv != cfg.canon_out or cfg.layer_types is None \
            or set(cfg.layer_types) - {FULL, SLIDING} or cfg.attn_temp_form != "ratio" or cfg.attn_temp_shift != 1:
        return ("attention 'relative_logits' with an embedding norm, per-head QK-norms, no biases, an untied head, "
                "Canon layers of one kernel on keys, values and sublayer outputs, and layer types hybrid and "
                "hybrid_sliding")
    for i in range(cfg.n_layers):
        lc, sliding = cfg.for_layer(i), cfg.layer_types[i] == SLIDING
        if lc.attn_scale != 1.0 / lc.head_dim or (lc.sliding_window is not None) != sliding or sliding and (
                lc.rel_logits_extent != lc.sliding_window or lc.attn_temp_scale):
            return ("scores scaled by 1/head_dim, windows on the hybrid_sliding layers only, each with a bias over "
                    "its window and no query temperature")
    if not cfg.n_experts or not (cfg.router_shared_sink and cfg.router_learned_scale and cfg.ffn_learned_scale
                                 and cfg.expert_bias and cfg.moe_period == 1):
        return "a mixture with shared experts as the router's sink, learned router and FFN scalars, an expert bias"
    return None


def from_config(cfg: ModelConfig) -> dict:
    swa = cfg.for_layer(cfg.layer_types.index(SLIDING)) if SLIDING in cfg.layer_types else cfg.replace(
        layer_types=None, layer_overrides=None, sliding_window=512, rel_logits_extent=512)
    act = {"swiglu": "silu"}.get(cfg.ffn, cfg.ffn)
    return dict(
        model_type="inkling_text", architectures=["InklingForCausalLM"], vocab_size=cfg.vocab_size,
        hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_kv_heads, head_dim=cfg.head_dim, swa_num_attention_heads=swa.n_heads,
        swa_num_key_value_heads=swa.n_kv_heads, swa_head_dim=swa.head_dim, sliding_window_size=swa.sliding_window,
        d_rel=cfg.rel_logits_dim, rel_extent=cfg.rel_logits_extent,
        log_scaling_n_floor=cfg.attn_temp_floor if cfg.attn_temp_scale else None,
        log_scaling_alpha=cfg.attn_temp_scale or 0.1, layer_types=list(cfg.layer_types),
        max_position_embeddings=cfg.context_length, rms_norm_eps=cfg.norm_eps, conv_kernel_size=cfg.canon_kv,
        mlp_layer_types=["dense" if i < cfg.moe_dense_first else "sparse" for i in range(cfg.n_layers)],
        intermediate_size=cfg.ffn_hidden, hidden_act=act, moe_intermediate_size=cfg.expert_hidden,
        n_routed_experts=cfg.n_experts, num_experts_per_tok=cfg.experts_per_token,
        n_shared_experts=cfg.n_shared_experts, shared_expert_sink=True, route_scale=cfg.router_scale,
        logits_mup_width_multiplier=cfg.logit_divisor, tie_word_embeddings=False)


FAMILIES.register("inkling_text")(Family(RULES, to_config, from_config, (r"^model\.mtp\.",),
                                         stacked_experts=STACKED, needs=_needs))
