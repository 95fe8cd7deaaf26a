"""SmallThinker (GGUF `smallthinker`, llmarch's smallthinker), as convert_hf_to_gguf.py's SmallThinkerModel writes
it: LLaMA's attention tensors (q and k unpermuted: llama.cpp's graph rotates halves), `primary_router` as
ffn_gate_inp, which llama.cpp's graph multiplies by the layer's input before the attention norm, the experts stacked
(ffn_gate_exps, ffn_up_exps, ffn_down_exps; llama.cpp runs them as ReGLU whatever the file says), their width as both
feed_forward_length and expert_feed_forward_length, `expert_gating_func` softmax or sigmoid (the top-k weights always
renormalised). llama.cpp knows two layer layouts only (llama-model.cpp's load_hparams): without
`attention.sliding_window`, full attention with RoPE in every layer (SmallThinker-4B's); with it, layers 0, 4, 8 ...
full and without positions, the others sliding with RoPE, their window 4096 whatever the key says (SmallThinker-21B's).
Other layouts and windows are refused, in and out, as RoPE scaling and expert_weights_scale."""
from __future__ import annotations

from ...errors import LlmarchError
from .arch import Arch, Meta
from .deepseek import SIGMOID, SOFTMAX

PERIOD, WINDOW = 4, 4096  # llama.cpp's smallthinker: set_swa_pattern(4, dense_first), n_swa 4096


def _layouts(n: int, sliding: bool) -> tuple[list[int], list[int]]:
    """(rope_layout, sliding_window_layout) as llama.cpp runs a file with or without a window."""
    if not sliding:
        return [1] * n, [0] * n
    flags = [int(i % PERIOD != 0) for i in range(n)]
    return flags, flags


def _smallthinker(hf: dict, meta: Meta) -> dict:
    gating = meta.get("expert_gating_func", None)
    window = meta.get("attention.sliding_window", 0)
    if gating not in (SOFTMAX, SIGMOID) or window not in (0, WINDOW) or hf.get("rope_scaling") \
            or meta.get("expert_weights_scale", 1.0) not in (0.0, 1.0):
        raise LlmarchError(f"{meta.path}: a smallthinker file needs expert_gating_func softmax or sigmoid, a sliding "
                           f"window of {WINDOW} or none, no RoPE scaling and no expert_weights_scale")
    n = hf["num_hidden_layers"]
    rope, sliding = _layouts(n, bool(window))
    return {"model_type": "smallthinker", "_name_or_path": hf["_name_or_path"], "vocab_size": hf["vocab_size"],
            "hidden_size": hf["hidden_size"], "num_hidden_layers": n, "num_attention_heads": hf["num_attention_heads"],
            "num_key_value_heads": hf["num_key_value_heads"], "head_dim": hf["head_dim"],
            "rms_norm_eps": hf["rms_norm_eps"], "rope_theta": hf["rope_theta"],
            "max_position_embeddings": hf["max_position_embeddings"], "rope_layout": rope,
            "sliding_window_layout": sliding, "sliding_window_size": WINDOW,
            "moe_num_primary_experts": meta.get("expert_count"),
            "moe_num_active_primary_experts": meta.get("expert_used_count"),
            "moe_ffn_hidden_size": meta.get("expert_feed_forward_length", hf["intermediate_size"]),
            "moe_primary_router_apply_softmax": gating == SOFTMAX,
            "tie_word_embeddings": hf["tie_word_embeddings"], "eos_token_id": hf["eos_token_id"]}


def _smallthinker_common(hf: dict) -> dict:
    return {**hf, "intermediate_size": hf["moe_ffn_hidden_size"],
            "rope_parameters": {"rope_type": "default", "rope_theta": hf["rope_theta"]}}


def _smallthinker_out(w, hf: dict) -> dict:
    n, sliding = hf["num_hidden_layers"], any(hf["sliding_window_layout"])
    if (hf["rope_layout"], hf["sliding_window_layout"]) != _layouts(n, sliding) or \
            (sliding and hf["sliding_window_size"] != WINDOW):
        raise LlmarchError("GGUF smallthinker holds RoPE in every full-attention layer, or layers 0, 4, 8 ... full "
                           f"without positions and the rest sliding (window {WINDOW}) with RoPE: llama.cpp's two "
                           "layouts")
    w.add_expert_count(hf["moe_num_primary_experts"])
    w.add_expert_used_count(hf["moe_num_active_primary_experts"])
    w.add_expert_feed_forward_length(hf["moe_ffn_hidden_size"])
    w.add_uint32(f"{w.arch}.expert_gating_func", SOFTMAX if hf["moe_primary_router_apply_softmax"] else SIGMOID)
    if sliding:
        w.add_sliding_window(WINDOW)
    return {}


ARCHS = {"smallthinker": Arch("smallthinker", fields=_smallthinker, common=_smallthinker_common,
                              write=_smallthinker_out)}
