"""MiniCPM3 (GGUF "minicpm3", convert_hf_to_gguf.py's MiniCPM3Model; llama.cpp's llm_build_minicpm3): latent
attention with its tensors as Hugging Face holds them (kv_b_proj whole, RoPE dims in halves: NeoX, no permutation),
attention.key_length the query/key head (nope + rope), rope.dimension_count the rotated part, q_lora_rank and
kv_lora_rank; LongRoPE's factors as the rope_factors_long/short tensors. llama.cpp's graph fixes MiniCPM3-4B's
scalars (scale_emb 12, scale_depth 1.4, dim_model_base 256: the converter writes none of them) and always compresses
the query (wq_a, wq_b), so a file means those and a model otherwise is refused on the way out. LongRoPE is written
only without an attention factor (factor 1, MiniCPM3-4B's): llama.cpp scales nothing for it; and llama.cpp takes the
long factors where its context window (n_ctx, which it pads to a multiple of 256) passes
rope.scaling.original_context_length, transformers and llmarch where the sequence does (measured: a window of 128
over an original context of 128 takes the long ones), so the two agree while the window stays within it."""
from __future__ import annotations

import math

from ...errors import LlmarchError
from .arch import Arch, Meta

_FIXED = {"scale_emb": 12, "scale_depth": 1.4, "dim_model_base": 256}  # llm_build_minicpm3's constants
_FACTORS = ("rope_factors_long.weight", "rope_factors_short.weight")


def _minicpm3(hf: dict, meta: Meta) -> dict:
    rope = meta.get("rope.dimension_count")
    q_rank = meta.get("attention.q_lora_rank", 0)
    if not q_rank or hf.pop("rope_scaling", None):
        raise LlmarchError(f"{meta.path}: GGUF minicpm3 needs attention.q_lora_rank (llama.cpp compresses the query) "
                           "and no RoPE scaling keys")
    theta, key = hf.pop("rope_theta"), hf.pop("head_dim")
    params = {"rope_type": "default", "rope_theta": theta}
    long, short = meta.tensor(_FACTORS[0]), meta.tensor(_FACTORS[1])
    if long is not None and short is not None:
        original = meta.get("rope.scaling.original_context_length", hf["max_position_embeddings"])
        params.update(rope_type="longrope", long_factor=long, short_factor=short, factor=1.0,
                      original_max_position_embeddings=original)
    return {**hf, **_FIXED, "q_lora_rank": q_rank, "kv_lora_rank": meta.get("attention.kv_lora_rank"),
            "qk_rope_head_dim": rope, "qk_nope_head_dim": key - rope, "rope_parameters": params,
            "v_head_dim": meta.get("attention.value_length", hf["hidden_size"] // hf["num_attention_heads"])}


def _minicpm3_out(w, hf: dict) -> dict:
    """MiniCPM3Model.set_gguf_parameters' keys (value_length too, which llama.cpp reads for any architecture), and
    LongRoPE's factors as tensors."""
    import numpy as np

    wrong = {k: hf.get(k) for k, v in _FIXED.items() if hf.get(k) is None or not math.isclose(hf[k], v, rel_tol=1e-6)}
    if wrong or not hf.get("q_lora_rank"):
        raise LlmarchError(f"GGUF minicpm3: llama.cpp's graph fixes scale_emb 12, scale_depth 1.4, dim_model_base 256 "
                           f"and compresses the query; this model has {wrong or 'q_lora_rank None'}")
    rope = hf["rope_parameters"]
    if rope["rope_type"] == "longrope" and (rope.get("factor", 1.0) != 1.0 or rope.get("attention_factor")):
        raise LlmarchError(f"GGUF minicpm3 holds LongRoPE without an attention factor (factor 1); this model has "
                           f"factor {rope.get('factor')} and attention_factor {rope.get('attention_factor')}")
    nope, r = hf["qk_nope_head_dim"], hf["qk_rope_head_dim"]
    w.add_q_lora_rank(hf["q_lora_rank"])
    w.add_kv_lora_rank(hf["kv_lora_rank"])
    w.add_key_length(nope + r)
    w.add_value_length(hf["v_head_dim"])
    w.add_rope_dimension_count(r)
    if rope["rope_type"] != "longrope":
        return {}
    w.add_rope_scaling_orig_ctx_len(rope["original_max_position_embeddings"])
    return {name: np.asarray(rope[f"{kind}_factor"], dtype=np.float32) for name, kind in zip(_FACTORS,
                                                                                              ("long", "short"))}


ARCHS = {
    "minicpm3": Arch("minicpm3", fields=_minicpm3, write=_minicpm3_out, consumed=frozenset(_FACTORS),
                     head_lengths=False),
}
