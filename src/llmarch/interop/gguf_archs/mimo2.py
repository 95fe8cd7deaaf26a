"""MiMo-V2-Flash (GGUF "mimo2", llama.cpp's LLM_ARCH_MIMO2): full and sliding-window layers, the sliding ones with
twice the KV heads and a sink per head, values narrower than queries and keys, scaled values, a dense first FFN and
then mixtures.

What the file holds (llama.cpp's src/models/mimo2.cpp reads it): head_count_kv one count per layer,
attention.key_length the q/k head width and attention.value_length the values' (value_dim), rope.dimension_count
the rotated dims (one for both kinds), rope.freq_base the full layers' base and rope.freq_base_swa the sliding
ones', attention.sliding_window and attention.sliding_window_pattern one flag per layer, attention.value_scale
(attn_value_multiplier; llama.cpp scales the attention output, the same for an o_proj without bias); the sinks
as attn_sinks.weight (optional: the full layers have none); a layer is a mixture where it holds ffn_gate_inp,
routed by sigmoid scores plus exp_probs_b, the chosen weights always renormalised. What the graph cannot mean is
refused on writing: q, k, v biases, expert groups, a routed scale other than 1, weights not renormalised, kinds of
another rotated width."""
from __future__ import annotations

import math

from ...errors import LlmarchError
from .arch import FULL, SLIDING, Arch, Meta


def _fraction(dim: int, head: int) -> float:
    """The share of a head of `head` dims whose rotated dims, int(head * share), are `dim` (dim / head, or the next
    float up where the product rounds below dim)."""
    share = dim / head
    while int(head * share) < dim:
        share = math.nextafter(share, 1.0)
    return share


def _mimo2(hf: dict, meta: Meta) -> dict:
    n, head = hf["num_hidden_layers"], hf["head_dim"]
    types = meta.window_types(n, 1) or [FULL] * n
    kv = hf["num_key_value_heads"]
    kv = list(kv) if isinstance(kv, list) else [kv] * n
    full = {kv[i] for i, t in enumerate(types) if t == FULL} | {kv[i] // 2 for i, t in enumerate(types) if t == SLIDING}
    if len(full) != 1 or any(kv[i] % 2 for i, t in enumerate(types) if t == SLIDING):
        raise LlmarchError(f"{meta.path}: mimo2 head_count_kv {kv} is not K on full layers and 2K on sliding ones")
    partial = _fraction(meta.get("rope.dimension_count"), head)
    experts = meta.get("expert_count", 0)
    dense = next((i for i in range(n) if meta.has(f"blk.{i}.ffn_gate_inp.weight")), n)
    rope = {FULL: {"rope_type": "default", "rope_theta": hf.pop("rope_theta"), "partial_rotary_factor": partial},
            SLIDING: {"rope_type": "default", "rope_theta": meta.get("rope.freq_base_swa", 10000.0),
                      "partial_rotary_factor": partial}}
    return {**hf, "num_key_value_heads": full.pop(), "layer_types": types,
            "v_head_dim": meta.get("attention.value_length"),
            "attention_value_scale": meta.get("attention.value_scale", 1.0),
            "sliding_window": meta.get("attention.sliding_window", 129), "rope_parameters": rope,
            "n_routed_experts": experts, "num_experts_per_tok": meta.get("expert_used_count", 1),
            "moe_intermediate_size": meta.get("expert_feed_forward_length", 1),
            "mlp_layer_types": ["dense"] * dense + ["sparse"] * (n - dense),
            "tie_word_embeddings": hf["tie_word_embeddings"] or meta.same("output.weight", "token_embd.weight")}


def _mimo2_common(hf: dict) -> dict:
    """As the converter reads config.json: head_count_kv per layer."""
    kv = hf["num_key_value_heads"]
    return {**hf, "num_key_value_heads": [2 * kv if t == SLIDING else kv for t in hf["layer_types"]]}


def _mimo2_out(w, hf: dict) -> dict:
    rope = hf["rope_parameters"]
    if hf["attention_bias"] or hf["n_group"] > 1 or hf["routed_scaling_factor"] != 1.0 or not hf["norm_topk_prob"]:
        raise LlmarchError("GGUF mimo2 (llama.cpp) has no q, k, v biases, no expert groups, no routed scale and always "
                           "renormalises the chosen experts' weights")
    if rope[FULL]["partial_rotary_factor"] != rope[SLIDING]["partial_rotary_factor"]:
        raise LlmarchError("GGUF mimo2 rotates as many dims of each head on full and sliding layers")
    w.add_key_length(hf["head_dim"])
    w.add_value_length(hf["v_head_dim"])
    w.add_rope_dimension_count(int(hf["head_dim"] * rope[FULL]["partial_rotary_factor"]))
    w.add_rope_freq_base_swa(rope[SLIDING]["rope_theta"])
    w.add_sliding_window(hf["sliding_window"])
    w.add_sliding_window_pattern([t == SLIDING for t in hf["layer_types"]])
    w.add_float32(f"{w.arch}.attention.value_scale", hf["attention_value_scale"])
    w.add_expert_count(hf["n_routed_experts"])
    w.add_expert_used_count(hf["num_experts_per_tok"])
    w.add_expert_feed_forward_length(hf["moe_intermediate_size"])
    return {}


def _mimo2_model_out(w, cfg):
    """The config the file reads back as: each kind's rope_fraction the rotated dims over head_dim (the same dims:
    MiMo's 0.334 of 192 is 64 of 192)."""
    fraction = _fraction(cfg.rotary_dim, cfg.head_dim)
    over = {t: {**f, "rope_fraction": fraction} if "rope_fraction" in f else f
            for t, f in (cfg.layer_overrides or {}).items()}
    return cfg.replace(rope_fraction=fraction, layer_overrides=over or None)


ARCHS = {
    "mimo2": Arch("mimo_v2_flash", fields=_mimo2, common=_mimo2_common, write=_mimo2_out, head_lengths=False,
                  model_out=_mimo2_model_out, head_copy=True,
                  renamed=((".e_score_correction_bias", ".e_score_correction.bias"),
                           (".self_attn.attention_sink_bias", ".self_attn.attention_sink_bias.weight"))),
}
