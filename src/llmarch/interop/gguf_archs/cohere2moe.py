"""Cohere2-MoE (GGUF `cohere2moe`): Command R7B's parallel block under one norm without bias (RMSNorm where the file
has `attention.layer_norm_rms_epsilon`, else LayerNorm), `attention.sliding_window` on the layers
`sliding_window_pattern` flags, RoPE (adjacent pairs: q and k as Hugging Face holds them) on those and on the
`leading_dense_block_count` dense layers (transformers' force_rope), none on the other full layers; `logit_scale`;
then experts routed by `expert_gating_func` (softmax, or sigmoid renormalised where `expert_weights_norm`) beside
shared experts whose output llama.cpp averages with the routed one. The gguf package (0.19) has no cohere2moe: its
tensors are named by glm4moe's map. Out refused: shared experts summed (shared_expert_combination_strategy sum;
llama.cpp averages) and dense first layers with full attention without RoPE (llama.cpp turns every dense layer)."""
from __future__ import annotations

from ...errors import LlmarchError
from .arch import FULL, SLIDING, Arch, Meta
from .deepseek import SIGMOID, SOFTMAX


def _cohere2moe(hf: dict, meta: Meta) -> dict:
    n, dense = hf["num_hidden_layers"] - meta.get("nextn_predict_layers", 0), meta.get("leading_dense_block_count")
    gating = meta.get("expert_gating_func", SIGMOID)
    if gating not in (SOFTMAX, SIGMOID) or gating == SOFTMAX and not meta.get("expert_weights_norm", False):
        raise LlmarchError(f"{meta.path}: cohere2moe routing other than a renormalised softmax or a sigmoid is not "
                           "supported")
    types = meta.window_types(n, 4) or [FULL] * n
    width = meta.get("expert_feed_forward_length")
    rms = meta.get("attention.layer_norm_rms_epsilon", None)
    return {**hf, "model_type": "cohere2_moe", "num_hidden_layers": n, "intermediate_size": width,
            "prefix_dense_intermediate_size": hf["intermediate_size"], "num_experts": meta.get("expert_count"),
            "num_experts_per_tok": meta.get("expert_used_count"),
            "num_shared_experts": meta.get("expert_shared_count", 0),
            "expert_selection_fn": "softmax" if gating == SOFTMAX else "sigmoid",
            "norm_topk_prob": bool(meta.get("expert_weights_norm", False)),
            "shared_expert_combination_strategy": "average", "sliding_window": meta.get("attention.sliding_window"),
            "layer_types": types, "mlp_layer_types": ["dense"] * dense + ["sparse"] * (n - dense),
            "prefix_dense_sliding_window_pattern": 1, "logit_scale": meta.get("logit_scale", 1.0),
            "layer_norm_eps": meta.get("attention.layer_norm_epsilon", rms), "rms_norm_eps": rms,
            "tie_word_embeddings": True}


def _cohere2moe_common(hf: dict) -> dict:
    """The dense layers' width as feed_forward_length; RMSNorm's epsilon only where the model has RMSNorm."""
    out = {**hf, "intermediate_size": hf["prefix_dense_intermediate_size"], "experts_width": hf["intermediate_size"]}
    if out.get("rms_norm_eps") is None:
        out.pop("rms_norm_eps", None)
    return out


def _cohere2moe_out(w, hf: dict) -> dict:
    k = hf["mlp_layer_types"].count("dense")
    if hf["num_shared_experts"] and hf["shared_expert_combination_strategy"] != "average":
        raise LlmarchError("GGUF cohere2moe (llama.cpp) averages the shared experts' output with the routed one; "
                           "this model sums them")
    if hf["prefix_dense_sliding_window_pattern"] != 1 and FULL in hf["layer_types"][:k]:
        raise LlmarchError("GGUF cohere2moe (llama.cpp) turns RoPE on every dense first layer; this model's dense "
                           "full-attention layers have none")
    if "rms_norm_eps" not in hf:
        w.add_layer_norm_eps(hf["layer_norm_eps"])
    w.add_sliding_window(hf["sliding_window"] or 0)
    w.add_sliding_window_pattern([t == SLIDING for t in hf["layer_types"]])
    w.add_logit_scale(hf["logit_scale"])
    w.add_leading_dense_block_count(k)
    w.add_expert_count(hf["num_experts"])
    w.add_expert_used_count(hf["num_experts_per_tok"])
    w.add_expert_feed_forward_length(hf["experts_width"])
    w.add_expert_shared_count(hf["num_shared_experts"])
    w.add_expert_shared_feed_forward_length(hf["num_shared_experts"] * hf["experts_width"])
    softmax = hf["expert_selection_fn"] == "softmax"
    w.add_uint32(f"{w.arch}.expert_gating_func", SOFTMAX if softmax else SIGMOID)
    w.add_expert_weights_norm(softmax or bool(hf["norm_topk_prob"]))
    w.add_nextn_predict_layers(0)
    return {}


ARCHS = {"cohere2moe": Arch("cohere2_moe", names="glm4moe", fields=_cohere2moe, write=_cohere2moe_out,
                            common=_cohere2moe_common, layer_norm=True)}
