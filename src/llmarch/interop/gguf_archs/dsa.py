"""DeepSeek Sparse Attention (GGUF `deepseek32`, DeepSeek-V3.2; `glm-dsa`, GLM-5): deepseek2's latent attention,
keys and tensors (deepseek.py) with the lightning indexer beside each layer's attention, as llama.cpp's converter
writes them: `attention.indexer.head_count`, `key_length` and `top_k`, the indexer's wq_b, wk, k_norm (weight and
bias) and weights_proj as `blk.N.indexer.attn_q_b`, `attn_k`, `k_norm`, `proj`, stored as Hugging Face holds them.
llama.cpp's graphs turn the indexer's first rope.dimension_count dims as the Hugging Face models do (deepseek32 in
halves, glm-dsa in adjacent pairs), keep each query's top_k best keys by the same ReLU-weighted score (a Hadamard
rotation of its q and k first, which leaves their dot products as they are) and attend to those; glm-dsa's
`attention.indexer.types` marks each layer full (1: its own indexer) or shared (0: the last full layer's
selection), GLM-5's indexer_types. The gguf package (0.19) has no deepseek32: its tensors are named as glm-dsa's."""
from __future__ import annotations

import dataclasses

from ...errors import LlmarchError
from .arch import Meta
from .deepseek import ARCHS as _DEEPSEEK, _deepseek2, _deepseek2_out

DEEPSEEK2 = _DEEPSEEK["deepseek2"]


def _indexed(hf: dict, meta: Meta, model_type: str) -> dict:
    """deepseek2's config.json fields (V3's router: sigmoid scores with exp_probs_b) and the indexer's; the
    multi-token-prediction layers (nextn_predict_layers, counted in block_count) are not read."""
    out = _deepseek2({**hf, "num_hidden_layers": hf["num_hidden_layers"] - meta.get("nextn_predict_layers", 0)}, meta)
    if out.get("n_routed_experts") and out["model_type"] != "deepseek_v3":
        raise LlmarchError(f"{meta.path}: {meta.arch} routing other than sigmoid with exp_probs_b is not supported")
    return {**out, "model_type": model_type, "index_topk": meta.get("attention.indexer.top_k"),
            "index_n_heads": meta.get("attention.indexer.head_count"),
            "index_head_dim": meta.get("attention.indexer.key_length")}


def _indexed_out(w, hf: dict) -> dict:
    """deepseek2's keys (the router's gating sigmoid, as DeepSeek-V3's), the indexer's, and no NextN layers.
    llama.cpp rotates the indexer's q and k by a Hadamard matrix of the largest power of two (from 64) dividing its
    head width, so only a width that is such a power fits (other widths abort its graph); and it takes YaRN's mscale
    as 1 here (V3.2's mscale = mscale_all_dim = 1: with both 0.707 a tiny model decoded 0.14 logits apart,
    measured)."""
    width, rope = hf["index_head_dim"], hf["rope_parameters"]
    if width < 64 or width & (width - 1):
        raise LlmarchError(f"GGUF {w.arch} (llama.cpp) needs an indexer head width that is a power of two from 64 "
                           f"(its Hadamard rotation); this model has index_head_dim {width}")
    if rope.get("rope_type") == "yarn" and not rope.get("mscale") == rope.get("mscale_all_dim") == 1.0:
        raise LlmarchError(f"GGUF {w.arch} (llama.cpp) takes YaRN with mscale = mscale_all_dim = 1; this model has "
                           f"mscale {rope.get('mscale')}, mscale_all_dim {rope.get('mscale_all_dim')}")
    _deepseek2_out(w, {**hf, "model_type": "deepseek_v3"})
    w.add_indexer_head_count(hf["index_n_heads"])
    w.add_indexer_key_length(hf["index_head_dim"])
    w.add_indexer_top_k(hf["index_topk"])
    w.add_nextn_predict_layers(0)
    return {}


def _glm_dsa(hf: dict, meta: Meta) -> dict:
    """GLM-5's indexer types; without attention.indexer.types every layer has its indexer (llama.cpp's reading of
    a GLM-5 or 5.1 file)."""
    out = _indexed(hf, meta, "glm_moe_dsa")
    n = out["num_hidden_layers"]
    types = meta.get("attention.indexer.types", None)
    return {**out, "indexer_types": ["full"] * n if types is None else
            ["full" if t else "shared" for t in list(types)[:n]]}


def _glm_dsa_out(w, hf: dict) -> dict:
    import gguf

    _indexed_out(w, hf)
    w.add_key_value(f"{w.arch}.attention.indexer.types", [int(t == "full") for t in hf["indexer_types"]],
                    gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.UINT32)
    return {}


ARCHS = {
    "deepseek32": dataclasses.replace(DEEPSEEK2, model_type="deepseek_v32", also=(), names="glm-dsa", mtp=True,
                                      fields=lambda hf, meta: _indexed(hf, meta, "deepseek_v32"), write=_indexed_out),
    "glm-dsa": dataclasses.replace(DEEPSEEK2, model_type="glm_moe_dsa", also=(), mtp=True, fields=_glm_dsa,
                                   write=_glm_dsa_out),
}
