"""Phi-3: partial RoPE, LongRoPE's factors as tensors, an optional window. Phi-3.5-MoE (GGUF `phimoe`,
convert_hf_to_gguf.py's PhiMoeModel): Phi-3's keys with expert_count and expert_used_count, the router as
ffn_gate_inp, Mixtral's experts stacked as ffn_{gate,up,down}_exps, the norms' and the head's biases.

llama.cpp's phimoe graph (its phi3 graph) cannot compute Phi-3.5-MoE: it normalises by RMSNorm (adding the
LayerNorm's bias after) and routes by a softmax's top 2, renormalised, where the model has LayerNorms and
SparseMixer. Measured on a tiny random Phi-3.5-MoE: llama.cpp's logits 0.09 from llmarch's, its greedy tokens
others; 0.098 with llmarch routing by the renormalised softmax too (the norms alone keep them apart). So a phimoe
file reads here as the Hugging Face model it was converted from, and llmarch writes none."""
from __future__ import annotations

from ...errors import LlmarchError
from .arch import Arch, Meta


def _phi3(hf: dict, meta: Meta) -> dict:
    """Phi-3: no key_length (head_dim is d / heads), rope.dimension_count the rotated part of a head, a window
    of 0 for none, and LongRoPE as the rope_factors_long/short tensors with rope.scaling.attn_factor."""
    head_dim = hf["hidden_size"] // hf["num_attention_heads"]
    original = meta.get("rope.scaling.original_context_length", hf["max_position_embeddings"])
    rope = {"rope_type": "default", "rope_theta": hf.pop("rope_theta"),
            "partial_rotary_factor": meta.get("rope.dimension_count", head_dim) / head_dim}
    long, short = meta.tensor("rope_factors_long.weight"), meta.tensor("rope_factors_short.weight")
    if long is not None and short is not None:
        rope.update(rope_type="longrope", long_factor=long, short_factor=short,
                    original_max_position_embeddings=original)
        attn = meta.get("rope.scaling.attn_factor", None)
        if attn is not None:
            rope["attention_factor"] = float(attn)
    hf.pop("rope_scaling", None)
    return {**hf, "head_dim": head_dim, "rope_parameters": rope, "original_max_position_embeddings": original,
            "sliding_window": meta.get("attention.sliding_window", 0) or None}


def _phi3_out(w, hf: dict) -> dict:
    """Phi3MiniModel: the original context, a window of 0 for none, LongRoPE's factors as tensors."""
    import numpy as np

    rope = hf["rope_parameters"]
    w.add_rope_scaling_orig_ctx_len(hf["original_max_position_embeddings"])
    w.add_sliding_window(hf.get("sliding_window") or 0)
    if rope.get("rope_type") != "longrope":
        return {}
    if rope.get("attention_factor") is not None:
        w.add_rope_scaling_attn_factors(rope["attention_factor"])
    return {"rope_factors_long.weight": np.asarray(rope["long_factor"], dtype=np.float32),
            "rope_factors_short.weight": np.asarray(rope["short_factor"], dtype=np.float32)}


ARCHS = {
    "phi3": Arch("phi3", fields=_phi3, consumed=frozenset({"rope_factors_long.weight", "rope_factors_short.weight"}),
                 write=_phi3_out),
}


def _phimoe(hf: dict, meta: Meta) -> dict:
    """Phi-3.5-MoE: Phi-3's keys, its experts (expert_count, expert_used_count), the LongRoPE attention factor as
    the mscales, the norms' and head's biases where the file has them."""
    out = _phi3(hf, meta)
    rope = out["rope_parameters"]
    if rope.get("rope_type") == "longrope":
        attn = rope.pop("attention_factor", None)
        rope["short_mscale"] = rope["long_mscale"] = attn
    return {**out, "num_local_experts": meta.get("expert_count"), "num_experts_per_tok": meta.get("expert_used_count"),
            "lm_head_bias": meta.has("output.bias")}


def _phimoe_out(w, hf: dict) -> dict:
    """_phimoe inverted (what a file of the family holds; model_out refuses to write one, see above)."""
    rope = hf["rope_parameters"]
    if rope.get("rope_type") == "longrope":
        rope = {**rope, "attention_factor": rope.pop("short_mscale", None)}
    w.add_expert_count(hf["num_local_experts"])
    w.add_expert_used_count(hf["num_experts_per_tok"])
    return _phi3_out(w, {**hf, "rope_parameters": rope})


def _phimoe_refused(w, cfg):
    raise LlmarchError("GGUF phimoe (llama.cpp) computes RMSNorm and softmax top-2 routing, not this model's "
                       f"norm={cfg.norm!r} and router_scoring={cfg.router_scoring!r}; llmarch does not write it")


ARCHS["phimoe"] = Arch("phimoe", fields=_phimoe, write=_phimoe_out, model_out=_phimoe_refused,
                       consumed=frozenset({"rope_factors_long.weight", "rope_factors_short.weight"}))
