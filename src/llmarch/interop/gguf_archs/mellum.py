"""JetBrains Mellum 2 (GGUF `mellum`, llmarch's mellum), as convert_hf_to_gguf.py's MellumModel writes it: Qwen3-MoE's
tensors (q, k, v apart and unpermuted: llama.cpp rotates NEOX halves; per-head q/k norms; stacked experts), the
experts' width as expert_feed_forward_length, and with a window its layers flagged (sliding_window_pattern), their
RoPE base as rope.freq_base_swa beside the full layers' rope.freq_base (llama.cpp's default without one: the same).
llama.cpp's mellum graph fixes what the config leaves free: every layer a mixture (no dense layers), softmax scores
with the top-k renormalised, all of each head rotated, no attention biases (it loads q, k, v biases but no o bias)
and an output matrix of its own (a tied head goes out as a copy of the embedding, head_copy, and reads back tied);
GGUF out refuses a model otherwise. llama-cpp-python 0.3.36's mellum graph also rotates the sliding layers with
rope.freq_base, not the rope.freq_base_swa it loads (measured: a tiny Mellum with bases 5e4 and 100 decodes 0.17
apart from llmarch, 2.4e-7 with one base), so GGUF out refuses sliding layers with a base of their own; reading
takes rope.freq_base_swa as the converter meant it (transformers' model)."""
from __future__ import annotations

from ...errors import LlmarchError
from .arch import FULL, SLIDING, Arch, Meta


def _mellum(hf: dict, meta: Meta) -> dict:
    if hf["attention_bias"] or hf.pop("rope_scaling", None):
        raise LlmarchError(f"{meta.path}: mellum with attention biases or RoPE scaling is not supported")
    n, base = hf["num_hidden_layers"], hf.pop("rope_theta")
    types = meta.window_types(n, 4) or [FULL] * n  # llama.cpp's default pattern: every fourth layer full
    rope = {FULL: {"rope_type": "default", "rope_theta": base},
            SLIDING: {"rope_type": "default", "rope_theta": meta.get("rope.freq_base_swa", base)}}
    return {**hf, "layer_types": types, "sliding_window": meta.get("attention.sliding_window", None),
            "rope_parameters": rope, "num_local_experts": meta.get("expert_count"),
            "num_experts_per_tok": meta.get("expert_used_count"),
            "moe_intermediate_size": meta.get("expert_feed_forward_length"), "norm_topk_prob": True,
            "mlp_layer_types": ["sparse"] * n,
            "tie_word_embeddings": hf["tie_word_embeddings"] or meta.same("output.weight", "token_embd.weight")}


def _mellum_out(w, hf: dict) -> dict:
    """MellumModel.set_gguf_parameters; what llama.cpp's graph computes otherwise is refused first."""
    rope, types = hf["rope_parameters"], hf["layer_types"]
    if hf["attention_bias"] or "dense" in hf["mlp_layer_types"] or not hf["norm_topk_prob"]:
        raise LlmarchError("GGUF mellum (llama.cpp) has no attention biases, no dense layers and renormalised top-k "
                           "weights; this model has attention_bias, dense layers or norm_topk_prob false")
    if any(rope[t].get("partial_rotary_factor", 1.0) != 1.0 for t in rope):
        raise LlmarchError("GGUF mellum (llama.cpp) rotates all of each head; this model rotates a part")
    if SLIDING in types and rope[SLIDING]["rope_theta"] != rope[FULL]["rope_theta"]:
        raise LlmarchError(f"GGUF mellum: llama.cpp 0.3.36 rotates the sliding layers with the full layers' RoPE base "
                           f"({rope[FULL]['rope_theta']:g}); this model's sliding layers use "
                           f"{rope[SLIDING]['rope_theta']:g}")
    w.add_expert_count(hf["num_local_experts"])
    w.add_expert_used_count(hf["num_experts_per_tok"])
    w.add_expert_feed_forward_length(hf["moe_intermediate_size"])
    if SLIDING in types:
        w.add_sliding_window(hf["sliding_window"])
        w.add_sliding_window_pattern([t == SLIDING for t in types])
        w.add_rope_freq_base_swa(rope[SLIDING]["rope_theta"])
    return {}


ARCHS = {"mellum": Arch("mellum", fields=_mellum, write=_mellum_out, head_copy=True, names="qwen3moe")}
