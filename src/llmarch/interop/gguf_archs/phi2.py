"""Phi-1/1.5/2 as llama.cpp's `phi2` (convert_hf_to_gguf.py's Phi2Model; llama.cpp's llm_build_phi2): one LayerNorm
per layer (attn_norm) feeding attention and the FFN in parallel, q, k, v with biases, RoPE in the half-split (NeoX)
order on rope.dimension_count dims of each head, a tanh-GELU FFN (ffn_up, ffn_down; llama.cpp's ggml_gelu is the
tanh approximation, Phi's gelu_new), output_norm, and the head `output` with its bias. Files converted from the
original Phi-2 format hold q, k, v fused (attn_qkv, rows all q | all k | all v, as llama.cpp's graph views them);
reading splits them."""
from __future__ import annotations

import torch

from ...errors import LlmarchError
from .arch import Arch, Meta


def _phi2(hf: dict, meta: Meta) -> dict:
    """Phi: LayerNorm's attention.layer_norm_epsilon, RoPE on rope.dimension_count dims (the converter writes
    int(partial_rotary_factor * d) / heads; no freq_base, so llama.cpp's 10000), the head tied where the file's
    output is the embedding, byte for byte (the converter writes a tied head as a copy)."""
    head_dim = hf["hidden_size"] // hf["num_attention_heads"]
    rope = {"rope_type": "default", **(hf.pop("rope_scaling", None) or {}), "rope_theta": hf.pop("rope_theta"),
            "partial_rotary_factor": meta.get("rope.dimension_count", head_dim) / head_dim}
    return {**hf, "hidden_act": "gelu_new", "layer_norm_eps": meta.get("attention.layer_norm_epsilon"),
            "rope_parameters": rope,
            "tie_word_embeddings": hf["tie_word_embeddings"] or meta.same("output.weight", "token_embd.weight")}


def _phi2_out(w, hf: dict) -> dict:
    """Phi2Model.set_gguf_parameters: LayerNorm's epsilon (the other keys are the common ones, with the true
    feed_forward_length where the converter writes 4 * d)."""
    w.add_layer_norm_eps(hf["layer_norm_eps"])
    return {}


def _no_qk_norm(w, cfg):
    if cfg.qk_norm != "none":
        raise LlmarchError("GGUF phi2 has no QK-norm (llama.cpp's phi2 graph has none); this Phi has qk_layernorm")
    return cfg


def _fused_rows(which: int):
    """The q (0), k (1) or v (2) rows of a file's attn_qkv (weight or bias)."""
    def part(parts: list[torch.Tensor], hf: dict) -> torch.Tensor:
        heads, kv = hf["num_attention_heads"], hf["num_key_value_heads"]
        head_dim = parts[0].shape[0] // (heads + 2 * kv)
        return parts[0].split([heads * head_dim, kv * head_dim, kv * head_dim])[which]
    return part


# read only (no converter split: `to` None): q, k, v from a file's fused attn_qkv, named as Phi-3's qkv_proj, which
# the name map gives attn_qkv
_FUSED = tuple((rf"\.{p}_proj\.(weight|bias)$", (r".qkv_proj.\1",), None, _fused_rows(i)) for i, p in enumerate("qkv"))

ARCHS = {
    "phi2": Arch("phi", fields=_phi2, write=_phi2_out, model_out=_no_qk_norm, layer_norm=True, head_copy=True,
                 split=_FUSED),
}
