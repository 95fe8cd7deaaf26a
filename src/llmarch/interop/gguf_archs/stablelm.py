"""StableLM, as convert_hf_to_gguf.py's StableLMModel writes it: attn_norm (and ffn_norm unless the residual is
parallel) and output_norm with biases, attn_q/k/v (with biases where use_qkv_bias), attn_output, ffn_gate/up/down
without biases, and an `output` head, which llama.cpp requires (src/models/stablelm.cpp)."""
from __future__ import annotations

from .arch import Arch, Meta


def _stablelm(hf: dict, meta: Meta) -> dict:
    """StableLM: LayerNorm's attention.layer_norm_epsilon, RoPE on rope.dimension_count dims of each head (the
    converter writes int(partial_rotary_factor * d / heads); llama.cpp's neox rotation, Hugging Face's halves),
    q/k/v biases where the file has them, SwiGLU. The parallel residual where a layer has no ffn_norm: llama.cpp
    decides by that tensor (its use_parallel_residual key is not read), feeding attn_norm's output to the FFN. A
    file with attn_q_norm (StableLM-2-12B's per-head LayerNorms, stacked (heads, head_dim) by the converter's
    _stack_qk_norm) has qk_layernorm; each head's row is its norm (Arch.indexed). The head is tied where output is
    the embedding, byte for byte (the converter writes a tied head as a copy)."""
    head_dim = hf["hidden_size"] // hf["num_attention_heads"]
    rope = {**(hf.pop("rope_scaling", None) or {"rope_type": "default"}), "rope_theta": hf.pop("rope_theta"),
            "partial_rotary_factor": meta.get("rope.dimension_count", head_dim) / head_dim}
    return {**hf, "hidden_act": "silu", "layer_norm_eps": meta.get("attention.layer_norm_epsilon"),
            "use_qkv_bias": meta.has("blk.0.attn_q.bias"), "qk_layernorm": meta.has("blk.0.attn_q_norm.weight"),
            "use_parallel_residual": not meta.has("blk.0.ffn_norm.weight"), "rope_parameters": rope,
            "tie_word_embeddings": hf["tie_word_embeddings"] or meta.same("output.weight", "token_embd.weight")}


def _stablelm_out(w, hf: dict) -> dict:
    """StableLMModel.set_gguf_parameters: LayerNorm's epsilon and the residual's kind (the other keys are the
    common ones; it writes no freq_base, which llama.cpp then takes as 10000: written here, as llama.cpp reads it)."""
    w.add_layer_norm_eps(hf["layer_norm_eps"])
    w.add_parallel_residual(hf["use_parallel_residual"])
    return {}


def _no_dropout(w, cfg):
    """Dropout is not stored (it changes no output): the file reads back without it."""
    return cfg.replace(dropout=0.0)


# the converter's q_layernorm.weight (heads, head_dim), which the name map knows as attn_q_norm
_PER_HEAD = tuple((rf"\.{p}_layernorm\.norms\.(?P<row>\d+)\.weight$", f".{p}_layernorm.weight") for p in "qk")


ARCHS = {
    "stablelm": Arch("stablelm", fields=_stablelm, write=_stablelm_out, model_out=_no_dropout,
                     layer_norm=True, head_copy=True, indexed=_PER_HEAD),
}
