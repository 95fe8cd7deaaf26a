"""Step 3.5 / 3.7's text model (GGUF `step35`, llmarch's `step3p5`), as convert_hf_to_gguf.py's Step35Model writes
it: every `*norm.weight` stored as 1 + g (the q/k norms' too), query heads and key heads per layer
(attention.head_count arrays: the sliding layers' own), the window's layers flagged (sliding_window_pattern), the
full layers' RoPE base as rope.freq_base and the sliding ones' as rope.freq_base_swa; per-head sigmoid gates
`attn_gate`; `leading_dense_block_count` dense SwiGLUs, then sigmoid-scored experts chosen with `exp_probs_b`,
renormalised (expert_weights_norm) and scaled (expert_weights_scale), beside one shared SwiGLU; per-layer SwiGLU
bounds as swiglu_clamp_exp (routed) and swiglu_clamp_shexp (dense and shared). llama.cpp's step35 graph fixes what
the config leaves free: scores times 1/sqrt(head_dim), half of a full layer's head rotated (rope.dimension_count
halved) and all of a sliding one's, no other RoPE (a llama3 `rope_freqs` aside, which llmarch's step3p5 does not
hold): GGUF out refuses anything else, and reading refuses routing other than renormalised sigmoid scores."""
from __future__ import annotations

from ...errors import LlmarchError
from .arch import FULL, SLIDING, Arch, Meta
from .deepseek import SIGMOID
from .gemma import _NORM_PLUS_ONE


def _per_type(value, types: list[str]) -> dict:
    """A per-layer array key (or one number) as {layer type: value}; one value per type, else refused."""
    values = value if isinstance(value, list) else [value] * len(types)
    found = {t: {int(v) for v, k in zip(values, types) if k == t} for t in set(types)}
    if any(len(v) > 1 for v in found.values()):
        raise LlmarchError(f"GGUF step35: {value} is not one value per layer type")
    return {t: v.pop() for t, v in found.items()}


def _step35(hf: dict, meta: Meta) -> dict:
    if meta.get("expert_gating_func", SIGMOID) != SIGMOID or not meta.get("expert_weights_norm", False):
        raise LlmarchError(f"{meta.path}: step35 routing other than renormalised sigmoid scores is not supported")
    n, head_dim = hf["num_hidden_layers"], hf["head_dim"]
    types = meta.window_types(n, 0) or [FULL] * n
    heads = _per_type(hf["num_attention_heads"], types)
    kv = set(_per_type(hf["num_key_value_heads"], types).values())
    if len(kv) > 1:
        raise LlmarchError(f"{meta.path}: step35 with key heads per layer type {kv} is not supported (one count)")
    base = hf["rope_theta"]
    rope = {FULL: {"rope_type": "default", "rope_theta": base, "partial_rotary_factor": 0.5},
            SLIDING: {"rope_type": "default", "rope_theta": meta.get("rope.freq_base_swa", base),
                      "partial_rotary_factor": 1.0}}
    if meta.get("rope.dimension_count", head_dim) != head_dim or hf.pop("rope_scaling", None):
        raise LlmarchError(f"{meta.path}: step35 with rope.dimension_count other than the head's or RoPE scaling is "
                           "not supported")
    dense = meta.get("leading_dense_block_count", 0)
    limits = {k: [float(v) for v in meta.get(key, [])] or None
              for k, key in (("swiglu_limits", "swiglu_clamp_exp"), ("swiglu_limits_shared", "swiglu_clamp_shexp"))}
    return {**hf, "num_attention_heads": heads.get(FULL, heads.get(SLIDING)), "num_key_value_heads": kv.pop(),
            "num_sliding_attention_heads": heads.get(SLIDING), "layer_types": types,
            "sliding_window": meta.get("attention.sliding_window", None), "rope_parameters": rope,
            "query_pre_attn_scalar": head_dim, "n_routed_experts": meta.get("expert_count"),
            "num_experts_per_tok": meta.get("expert_used_count"),
            "moe_intermediate_size": meta.get("expert_feed_forward_length"),
            "share_expert_dim": meta.get("expert_shared_feed_forward_length"),
            "moe_router_scaling_factor": meta.get("expert_weights_scale", 1.0) or 1.0,
            "mlp_layer_types": ["dense" if i < dense else "sparse" for i in range(n)], **limits,
            "tie_word_embeddings": hf["tie_word_embeddings"] or meta.same("output.weight", "token_embd.weight")}


def _step35_out(w, hf: dict) -> dict:
    """Step35Model.set_gguf_parameters; what llama.cpp's graph computes otherwise is refused first."""
    head_dim, types = hf["head_dim"], hf["layer_types"]
    rope = hf["rope_parameters"]
    fractions = {t: rope[t]["partial_rotary_factor"] for t in set(types)}
    if abs(hf["query_pre_attn_scalar"] - head_dim) > 1e-4 * head_dim:
        raise LlmarchError(f"GGUF step35 scales scores by 1/sqrt(head_dim) (llama.cpp's graph); this model has "
                           f"query_pre_attn_scalar={hf['query_pre_attn_scalar']}, head_dim={head_dim}")
    if fractions != {t: {FULL: 0.5, SLIDING: 1.0}[t] for t in fractions}:
        raise LlmarchError(f"GGUF step35 rotates half of a full layer's head and all of a sliding one's (llama.cpp's "
                           f"graph); this model rotates {fractions}")
    heads = [hf["num_sliding_attention_heads"] if t == SLIDING else hf["num_attention_heads"] for t in types]
    w.add_head_count(heads)
    w.add_head_count_kv([hf["num_key_value_heads"]] * len(types))
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_dimension_count(head_dim)  # llama.cpp halves it for the full layers
    w.add_sliding_window(hf["sliding_window"] or 0)  # a key llama.cpp's step35 requires
    if SLIDING in types:
        w.add_rope_freq_base_swa(rope[SLIDING]["rope_theta"])
    w.add_sliding_window_pattern([t == SLIDING for t in types])
    w.add_expert_count(hf["n_routed_experts"])
    w.add_expert_used_count(hf["num_experts_per_tok"])
    w.add_expert_feed_forward_length(hf["moe_intermediate_size"])
    w.add_expert_shared_feed_forward_length(hf["share_expert_dim"])
    w.add_uint32(f"{w.arch}.expert_gating_func", SIGMOID)
    w.add_expert_weights_scale(hf["moe_router_scaling_factor"])
    w.add_expert_weights_norm(True)
    w.add_leading_dense_block_count(hf["mlp_layer_types"].count("dense"))
    w.add_moe_every_n_layers(1)
    if hf.get("swiglu_limits"):
        w.add_swiglu_clamp_exp([float(v or 0.0) for v in hf["swiglu_limits"]])
    if hf.get("swiglu_limits_shared"):
        w.add_swiglu_clamp_shexp([float(v or 0.0) for v in hf["swiglu_limits_shared"]])
    return {}


ARCHS = {
    "step35": Arch("step3p5", fields=_step35, write=_step35_out, head_lengths=False, head_copy=True, mtp=True,
                   tensors=_NORM_PLUS_ONE, renamed=((".moe.router_bias", ".moe.router_bias.bias"),)),
}
