"""DeepSeekMoE with LLaMA's attention: DeepSeek-MoE 16B / DeepSeek-V1 MoE (GGUF `deepseek`, convert_hf_to_gguf.py's
DeepseekModel), Ling (`bailingmoe`, BailingMoeModel: Ling-lite, Ling-plus) and DeepSeek-OCR's language model
(`deepseek2-ocr`: DeepSeek-V2's mixture under multi-head attention), read only as llmarch's GLM-4.5 family
(glm4_moe: LLaMA's attention, dense first layers, routed experts stacked, ungated shared experts of their width
fused) with its router set to theirs (Arch.model_in), which no config.json field of GLM-4.5's spells.

The deepseek and bailingmoe converters permute q and k as LLaMA's (Ling's fused query_key_value split into attn_q,
attn_k, attn_v first) and rotate them whole (rope.dimension_count the head). llama.cpp's graphs
(src/models/deepseek.cpp, bailingmoe.cpp): leading_dense_block_count dense SwiGLUs (deepseek; bailingmoe has none:
its loader wants experts in every layer), then the top expert_used_count experts by softmax score, their weights
renormalised where the file says expert_weights_norm (bailingmoe; deepseek never), times expert_weights_scale,
beside expert_shared_count shared SwiGLUs (width expert_shared_count x expert_feed_forward_length). DeepSeek-MoE's
own config has no scale (the converter writes 1.0). bailingmoe scales attention by 1/sqrt(rope.dimension_count): a
file rotating part of a head is refused, as one with dense layers.

deepseek2-ocr is the deepseek2 graph's multi-head branch: q and k unpermuted (llama.cpp turns halves there, as
measured), as many key heads as query heads, leading_dense_block_count dense layers, then DeepSeek-V2's routing:
the softmax top-k, renormalised where expert_weights_norm, times expert_weights_scale, beside the shared experts.
Sigmoid gating, an expert bias (exp_probs_b) or router groups (expert_group_count) are refused there: DeepSeek-OCR
has none, and V2's groups llama.cpp scores otherwise (gguf_archs/deepseek.py)."""
from __future__ import annotations

from ...errors import LlmarchError
from .arch import Arch, Meta
from .deepseek import SOFTMAX


def _mixture(hf: dict, meta: Meta, dense: int) -> dict:
    """GLM-4.5's config.json fields for the file's attention and experts (the router: _router)."""
    if meta.get("rope.dimension_count", hf["head_dim"]) != hf["head_dim"]:
        raise LlmarchError(f"{meta.path}: a {meta.arch} file rotating part of each head is not supported (its "
                           "converter rotates all of it)")
    if not meta.get("expert_count", 0):
        raise LlmarchError(f"{meta.path}: a {meta.arch} file without experts is not supported")
    return {**hf, "n_routed_experts": meta.get("expert_count"), "num_experts_per_tok": meta.get("expert_used_count"),
            "moe_intermediate_size": meta.get("expert_feed_forward_length"),
            "n_shared_experts": meta.get("expert_shared_count", 0), "first_k_dense_replace": dense,
            "routed_scaling_factor": meta.get("expert_weights_scale", 1.0) or 1.0, "n_group": 1, "topk_group": 1,
            "use_qk_norm": False, "partial_rotary_factor": 1.0}


def _deepseek(hf: dict, meta: Meta) -> dict:
    return _mixture(hf, meta, meta.get("leading_dense_block_count", 0))


def _bailingmoe(hf: dict, meta: Meta) -> dict:
    if meta.get("leading_dense_block_count", 0):
        raise LlmarchError(f"{meta.path}: a bailingmoe file with dense layers (leading_dense_block_count) is not "
                           "supported (llama.cpp's bailingmoe has experts in every layer)")
    return _mixture(hf, meta, 0)


def _deepseek2_ocr(hf: dict, meta: Meta) -> dict:
    dense = meta.get("leading_dense_block_count", 0)
    if meta.get("expert_gating_func", SOFTMAX) != SOFTMAX or meta.get("expert_group_count", 1) > 1 \
            or meta.has(f"blk.{dense}.exp_probs_b.bias"):
        raise LlmarchError(f"{meta.path}: deepseek2-ocr routing other than DeepSeek-V2's softmax without groups or "
                           "an expert bias is not supported")
    return _mixture(hf, meta, dense)


def _router(renormalize):
    """The softmax router's ModelConfig fields; renormalize(meta): whether the top-k weights are."""
    def fields(meta: Meta) -> dict:
        return dict(router_scoring="softmax", expert_bias=False, router_renormalize=renormalize(meta))

    return fields


ARCHS = {
    "deepseek": Arch("glm4_moe", permuted_qk=True, fields=_deepseek, read_only=True,
                     model_in=_router(lambda meta: False)),
    "bailingmoe": Arch("glm4_moe", permuted_qk=True, fields=_bailingmoe, read_only=True,
                       model_in=_router(lambda meta: bool(meta.get("expert_weights_norm", False)))),
    "deepseek2-ocr": Arch("glm4_moe", fields=_deepseek2_ocr, read_only=True,
                          model_in=_router(lambda meta: bool(meta.get("expert_weights_norm", False)))),
}
