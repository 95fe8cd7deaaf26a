"""LFM2 (GGUF `lfm2`, convert_hf_to_gguf.py's LFM2Model): attention.head_count_kv per layer, 0 for the gated
short-convolution layers; shortconv.l_cache the convolution's taps, its weight stored squeezed to (d, taps); the
final norm stored as token_embd_norm (Hugging Face's model.embedding_norm, applied after the last layer)."""
from __future__ import annotations

from .arch import Arch, Meta

CONV, FULL = "conv", "full_attention"


def _lfm2(hf: dict, meta: Meta) -> dict:
    n, kv = hf["num_hidden_layers"], hf["num_key_value_heads"]
    kv = kv if isinstance(kv, list) else [kv] * n
    return {**hf, "num_key_value_heads": max(kv), "layer_types": [FULL if k else CONV for k in kv],
            "conv_L_cache": meta.get("shortconv.l_cache"), "block_auto_adjust_ff_dim": False,
            "norm_eps": hf.pop("rms_norm_eps"), "conv_bias": meta.has(f"blk.{kv.index(0)}.shortconv.in_proj.bias")
            if 0 in kv else False}


def _lfm2_common(hf: dict) -> dict:
    """The KV-head count per layer (0 for a convolution layer) and RMSNorm's epsilon, as LFM2Model writes them."""
    kv = [0 if t == CONV else hf["num_key_value_heads"] for t in hf["layer_types"]]
    return {**hf, "num_key_value_heads": kv, "rms_norm_eps": hf["norm_eps"]}


def _lfm2_out(w, hf: dict) -> dict:
    w.add_shortconv_l_cache(hf["conv_L_cache"])
    return {}


SIGMOID = 2  # expert_gating_func's value (gguf.ExpertGatingFuncType)


def _lfm2moe(hf: dict, meta: Meta) -> dict:
    """LFM2-MoE (LFM2MoeModel's converter): LFM2's, with the mixture after leading_dense_block_count dense layers;
    the expert bias as exp_probs_b; llama.cpp's lfm2moe graph scores by sigmoid, renormalises and scales by nothing
    (its released model's settings: llama.cpp 0.3.36 decoded a model with routed_scaling_factor 1.5 0.02 logits
    apart, one of 1.0 within 1e-4), so that is what a file means."""
    if meta.get("expert_gating_func", SIGMOID) != SIGMOID:
        from ...errors import LlmarchError

        raise LlmarchError(f"{meta.path}: lfm2moe routing other than sigmoid is not supported")
    return {**_lfm2(hf, meta), "num_experts": meta.get("expert_count"),
            "num_experts_per_tok": meta.get("expert_used_count"),
            "moe_intermediate_size": meta.get("expert_feed_forward_length"),
            "num_dense_layers": meta.get("leading_dense_block_count", 0),
            "use_expert_bias": meta.has(f"blk.{meta.get('leading_dense_block_count', 0)}.exp_probs_b.bias"),
            "norm_topk_prob": True, "routed_scaling_factor": 1.0}


def _lfm2moe_out(w, hf: dict) -> dict:
    from ...errors import LlmarchError

    if not hf["norm_topk_prob"] or hf["routed_scaling_factor"] != 1.0:
        raise LlmarchError("GGUF lfm2moe renormalises the chosen experts' weights and scales them by nothing "
                           "(llama.cpp's graph); this model has norm_topk_prob "
                           f"{hf['norm_topk_prob']}, routed_scaling_factor {hf['routed_scaling_factor']}")
    _lfm2_out(w, hf)
    w.add_leading_dense_block_count(hf["num_dense_layers"])
    w.add_expert_count(hf["num_experts"])
    w.add_expert_used_count(hf["num_experts_per_tok"])
    w.add_expert_feed_forward_length(hf["moe_intermediate_size"])
    w.add_uint32(f"{w.arch}.expert_gating_func", SIGMOID)
    w.add_expert_weights_norm(True)
    return {}


_CONV = ((r"\.conv\.conv\.weight$", lambda t, hf: t.squeeze(1), lambda t, hf: t.unsqueeze(1)),)
ARCHS = {
    "lfm2": Arch("lfm2", fields=_lfm2, common=_lfm2_common, write=_lfm2_out, tensors=_CONV),
    # the stacked experts by the name map's Mixtral names (`layers.{bid}.feed_forward.experts.w1`, no `model.`)
    "lfm2moe": Arch("lfm2_moe", fields=_lfm2moe, common=_lfm2_common, write=_lfm2moe_out, tensors=_CONV,
                    renamed=((".feed_forward.expert_bias", ".feed_forward.expert_bias.bias"),), stripped=("model.",)),
}
