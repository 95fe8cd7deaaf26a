"""Sarvam MoE (GGUF `bailingmoe2`, llmarch's sarvam_moe: GLM-4.5's model under the original tensor names), as
convert_hf_to_gguf.py's SarvamMoEModel (a BailingMoeV2Model) writes it: q, k, v fused in `attn_qkv` (q | k | v, as
llama.cpp splits it), per-head q/k norms, RoPE on rope.dimension_count of each head (Sarvam: all of it), then
`leading_dense_block_count` dense SwiGLUs and experts chosen by sigmoid score plus `exp_probs_b`, renormalised where
`expert_weights_norm`, times `expert_weights_scale`, beside `expert_shared_count` shared SwiGLUs (their width
together `expert_shared_feed_forward_length`); multi-token-prediction layers (nextn_predict_layers, counted in
block_count) are not read. The converter shifts the expert bias to zero mean (the choice is the same); llmarch
writes it as it is. llama.cpp's bailingmoe2 graph loads no attention biases, no router groups, always a shared
expert and an output matrix (a tied head goes out as a copy of the embedding and reads back tied): GGUF out refuses
a model otherwise."""
from __future__ import annotations

from ...errors import LlmarchError
from .arch import Arch, Meta
from .deepseek import SIGMOID


def _bailingmoe2(hf: dict, meta: Meta) -> dict:
    if meta.get("expert_gating_func") != SIGMOID:
        raise LlmarchError(f"{meta.path}: bailingmoe2 routing other than sigmoid scores is not supported (Ling 2.0 "
                           "and Sarvam MoE route so)")
    width, shared = meta.get("expert_feed_forward_length"), meta.get("expert_shared_count")
    if meta.get("expert_shared_feed_forward_length", width * shared) != width * shared:
        raise LlmarchError(f"{meta.path}: bailingmoe2 with shared experts of another width than the routed ones is "
                           "not supported")
    return {**hf, "num_hidden_layers": hf["num_hidden_layers"] - meta.get("nextn_predict_layers", 0),
            "use_qk_norm": True, "partial_rotary_factor": meta.get("rope.dimension_count") / hf["head_dim"],
            "n_routed_experts": meta.get("expert_count"), "num_experts_per_tok": meta.get("expert_used_count"),
            "moe_intermediate_size": width, "n_shared_experts": shared, "n_group": 1, "topk_group": 1,
            "routed_scaling_factor": meta.get("expert_weights_scale", 1.0) or 1.0,
            "norm_topk_prob": meta.get("expert_weights_norm", False),
            "first_k_dense_replace": meta.get("leading_dense_block_count", 0),
            "tie_word_embeddings": hf["tie_word_embeddings"] or meta.same("output.weight", "token_embd.weight")}


def _bailingmoe2_out(w, hf: dict) -> dict:
    """SarvamMoEModel.set_gguf_parameters; what llama.cpp's graph cannot hold is refused first."""
    if hf["attention_bias"] or not hf["use_qk_norm"] or hf["n_group"] > 1 or not hf["n_shared_experts"]:
        raise LlmarchError("GGUF bailingmoe2 (llama.cpp) has no attention biases and no router groups, and always "
                           "q/k norms and a shared expert; this model has attention_bias, n_group > 1, no QK-norm "
                           "or no shared expert")
    width, shared = hf["moe_intermediate_size"], hf["n_shared_experts"]
    w.add_leading_dense_block_count(hf["first_k_dense_replace"])
    w.add_expert_count(hf["n_routed_experts"])
    w.add_expert_used_count(hf["num_experts_per_tok"])
    w.add_expert_feed_forward_length(width)
    w.add_expert_shared_feed_forward_length(width * shared)
    w.add_expert_shared_count(shared)
    w.add_expert_weights_scale(hf["routed_scaling_factor"])
    w.add_expert_weights_norm(hf["norm_topk_prob"])
    w.add_uint32(f"{w.arch}.expert_gating_func", SIGMOID)
    return {}


ARCHS = {
    "bailingmoe2": Arch("sarvam_moe", fields=_bailingmoe2, write=_bailingmoe2_out, head_copy=True, mtp=True,
                        renamed=((".mlp.gate.expert_bias", ".mlp.gate.expert_bias.bias"),)),
}
