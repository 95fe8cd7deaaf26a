"""Phi-3: partial RoPE, LongRoPE's factors as tensors, an optional window."""
from __future__ import annotations

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
