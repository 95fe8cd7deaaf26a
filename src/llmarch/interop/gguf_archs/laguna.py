"""Poolside Laguna (GGUF `laguna`, llmarch's laguna), as convert_hf_to_gguf.py's LagunaModel writes it: q, k, v apart
and unpermuted (llama.cpp rotates NEOX halves), per-head q/k norms, the softplus gate per head as `attn_gate`
(n_head rows), the query-head count per layer (attention.head_count an array), each layer type's RoPE (the full
layers' base and rotated dims as rope.freq_base, rope.dimension_count; the sliding ones' as rope.freq_base_swa,
rope.dimension_count_swa), the window; then `leading_dense_block_count` dense SwiGLUs and experts chosen by sigmoid
score plus `exp_probs_b`, renormalised, times expert_weights_scale, beside one shared SwiGLU
(expert_shared_feed_forward_length). The converter writes no layer pattern (llama.cpp's default: full where
i % 4 == 0); llmarch writes sliding_window_pattern, which llama.cpp reads first, so any layout holds. llama.cpp's
laguna graph has no router soft-cap and no attention biases (it loads no o bias), so a model with either is refused.
The gguf package's afmoe map names the tensors (it has no laguna), the pre-FFN norm aside."""
from __future__ import annotations

from ...errors import LlmarchError
from .arch import FULL, SLIDING, Arch, Meta
from .deepseek import SIGMOID


def _types(meta: Meta, n: int) -> list[str]:
    """Each layer's type: sliding_window_pattern's flags, or llama.cpp's laguna default (full where i % period
    == 0, period 4: load_swa_pattern's dense_first); full everywhere without a window."""
    if not meta.get("attention.sliding_window", 0):
        return [FULL] * n
    pattern = meta.get("attention.sliding_window_pattern", 4)
    flags = pattern[:n] if isinstance(pattern, list) else [i % int(pattern) != 0 for i in range(n)]
    return [SLIDING if flag else FULL for flag in flags]


def _laguna(hf: dict, meta: Meta) -> dict:
    if meta.get("expert_gating_func", SIGMOID) != SIGMOID or not meta.get("expert_weights_norm", False):
        raise LlmarchError(f"{meta.path}: laguna routing other than renormalised sigmoid scores is not supported")
    if hf["attention_bias"] or hf.pop("rope_scaling", None) or meta.get("expert_shared_count", 1) != 1:
        raise LlmarchError(f"{meta.path}: laguna with attention biases, RoPE scaling or shared experts other than "
                           "one is not supported")
    n, head_dim, base = hf["num_hidden_layers"], hf["head_dim"], hf.pop("rope_theta")
    types, heads = _types(meta, n), hf["num_attention_heads"]
    heads = heads if isinstance(heads, list) else [heads] * n
    rope = {FULL: {"rope_type": "default", "rope_theta": base,
                   "partial_rotary_factor": meta.get("rope.dimension_count", head_dim) / head_dim},
            SLIDING: {"rope_type": "default", "rope_theta": meta.get("rope.freq_base_swa", base),
                      "partial_rotary_factor": meta.get("rope.dimension_count_swa", head_dim) / head_dim}}
    dense = meta.get("leading_dense_block_count", 0)
    return {**hf, "num_attention_heads": heads[types.index(FULL)] if FULL in types else heads[0],
            "num_attention_heads_per_layer": heads, "layer_types": types, "gating": True,
            "sliding_window": meta.get("attention.sliding_window", None), "rope_parameters": rope,
            "num_experts": meta.get("expert_count"), "num_experts_per_tok": meta.get("expert_used_count"),
            "moe_intermediate_size": meta.get("expert_feed_forward_length"),
            "shared_expert_intermediate_size": meta.get("expert_shared_feed_forward_length"),
            "moe_routed_scaling_factor": meta.get("expert_weights_scale", 1.0) or 1.0,
            "mlp_layer_types": ["dense" if i < dense else "sparse" for i in range(n)]}


def _laguna_out(w, hf: dict) -> dict:
    """LagunaModel.set_gguf_parameters, with the layer pattern; what llama.cpp's graph computes otherwise is refused
    first."""
    if hf["attention_bias"] or hf["moe_router_logit_softcapping"]:
        raise LlmarchError("GGUF laguna (llama.cpp) has no attention biases and no router soft-cap; this model has "
                           "attention_bias or moe_router_logit_softcapping")
    rope, types, head_dim = hf["rope_parameters"], hf["layer_types"], hf["head_dim"]
    w.add_head_count(hf["num_attention_heads_per_layer"])
    if SLIDING in types:
        w.add_sliding_window(hf["sliding_window"])
        w.add_sliding_window_pattern([t == SLIDING for t in types])
        w.add_rope_freq_base_swa(rope[SLIDING]["rope_theta"])
        w.add_uint32(f"{w.arch}.rope.dimension_count_swa", int(head_dim * rope[SLIDING]["partial_rotary_factor"]))
    w.add_expert_count(hf["num_experts"])
    w.add_expert_used_count(hf["num_experts_per_tok"])
    w.add_expert_feed_forward_length(hf["moe_intermediate_size"])
    w.add_expert_shared_feed_forward_length(hf["shared_expert_intermediate_size"])
    w.add_expert_weights_norm(True)
    w.add_expert_weights_scale(hf["moe_routed_scaling_factor"])
    w.add_uint32(f"{w.arch}.expert_gating_func", SIGMOID)
    w.add_leading_dense_block_count(hf["mlp_layer_types"].count("dense"))
    return {}


ARCHS = {
    # afmoe's map names the pre-FFN norm post_attention_norm (AFMoE's sandwich); llama.cpp's laguna reads ffn_norm
    "laguna": Arch("laguna", fields=_laguna, write=_laguna_out, names="afmoe",
                   own_names=((".post_attention_layernorm.weight", "ffn_norm.weight"),),
                   renamed=((".mlp.experts.e_score_correction_bias", ".mlp.expert_bias.bias"),)),
}
