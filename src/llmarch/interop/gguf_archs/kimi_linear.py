"""Kimi Linear (GGUF `kimi-linear`, convert_hf_to_gguf.py's KimiLinearModel): Kimi Delta Attention and latent
attention without positions, DeepSeek-V3's mixture. Which layers are which is the per-layer attention.head_count_kv:
0 for a KDA layer (llama.cpp's recurrent layers), 1 for a latent attention layer (run absorbed, as deepseek2's:
key_length kv_lora_rank + the shared key dims, key_length_mla and value_length_mla the heads' own, kv_b_proj split
as k_b and v_b). The KDA layers' shape: kda.head_dim, ssm.conv_kernel, and attention.head_count, which llama.cpp
takes for the KDA heads too. The converter stores A as -exp(A_log) (shape (1, 1, H, 1)), each convolution's
weight (C, 1, k) as (1, C, 1, k), dt_bias as ssm_dt.bias; rope.dimension_count is the shared key's dims, never
rotated (llama.cpp's kimi graph has no positions).

What llama.cpp cannot represent, and writing refuses: KDA heads other than the latent attention's
(linear_num_heads != num_attention_heads), query compression (q_lora_rank: measured, llama.cpp's loader expects an
attn_q_a_norm of 0 dims), attention biases, no experts, top-k weights not renormalised. One
difference it has: llama.cpp L2-normalises KDA's q and k as x / sqrt(|x|^2 + rms_norm_eps), transformers (and
llmarch) with 1e-6 in place of rms_norm_eps: equal where |x|^2 is far above both (measured on a tiny random model
whose |q|^2 is near 1e-5: logits 0.016 apart, 4e-5 with llmarch's eps set to llama.cpp's)."""
from __future__ import annotations

import torch

from ...errors import LlmarchError
from .arch import Arch, Meta
from .deepseek import _kv_b_join, _kv_b_split, _v3_mixture, _v3_mixture_out

LINEAR, FULL = "linear_attention", "full_attention"


def _kimi(hf: dict, meta: Meta) -> dict:
    kv = hf["num_key_value_heads"]
    kv = kv if isinstance(kv, list) else [kv] * hf["num_hidden_layers"]
    rope, rank = meta.get("rope.dimension_count"), meta.get("attention.kv_lora_rank")
    moe = _v3_mixture(meta)
    out = {**hf, "num_key_value_heads": hf["num_attention_heads"], "layer_types": [FULL if k else LINEAR for k in kv],
           "linear_num_heads": hf["num_attention_heads"], "linear_head_dim": meta.get("kda.head_dim"),
           "linear_conv_kernel_dim": meta.get("ssm.conv_kernel"), "q_lora_rank": None, "kv_lora_rank": rank,
           "qk_rope_head_dim": rope,
           "qk_nope_head_dim": meta.get("attention.key_length_mla") - rope,
           "v_head_dim": meta.get("attention.value_length_mla"), "num_local_experts": moe.pop("n_routed_experts"),
           "num_experts_per_tok": moe.pop("num_experts_per_tok"), "n_shared_experts": moe.pop("n_shared_experts"),
           "mlp_layer_types": ["dense" if i < moe["first_k_dense_replace"] else "sparse"
                               for i in range(hf["num_hidden_layers"])], **moe}
    for key in ("head_dim", "rope_theta", "first_k_dense_replace"):
        out.pop(key)
    return out


def _kimi_common(hf: dict) -> dict:
    """As KimiLinearModel.set_gguf_parameters: one KV head (the latent) on the latent attention layers, none on the
    KDA layers; the context from model_max_length."""
    kv = [1 if t == FULL else 0 for t in hf["layer_types"]]
    return {**hf, "num_key_value_heads": kv, "max_position_embeddings": hf["model_max_length"]}


def _kimi_out(w, hf: dict) -> dict:
    if hf["linear_num_heads"] != hf["num_attention_heads"]:
        raise LlmarchError(f"GGUF kimi-linear (llama.cpp) takes the KDA heads from attention.head_count; this "
                           f"model has {hf['linear_num_heads']} KDA heads and {hf['num_attention_heads']} attention "
                           "heads")
    if hf.get("q_lora_rank"):
        raise LlmarchError("GGUF kimi-linear (llama.cpp) has no query compression (its loader reads no "
                           f"q_lora_rank: it expects attn_q_a_norm of 0 dims); this model has q_lora_rank "
                           f"{hf['q_lora_rank']}")
    if hf.get("attention_bias"):
        raise LlmarchError("GGUF kimi-linear (llama.cpp) has no attention biases; this model has attention_bias")
    if "num_experts" not in hf or not hf["moe_renormalize"]:
        raise LlmarchError("GGUF kimi-linear (llama.cpp) needs a mixture of experts after the dense layers, its top-k "
                           "weights renormalised (llama.cpp's graph always renormalises them)")
    rope, rank = hf["qk_rope_head_dim"], hf["kv_lora_rank"]
    w.add_ssm_conv_kernel(hf["linear_conv_kernel_dim"])
    w.add_kda_head_dim(hf["linear_head_dim"])
    w.add_kv_lora_rank(rank)
    w.add_rope_dimension_count(rope)
    w.add_key_length(rank + rope)
    w.add_value_length(rank)
    w.add_key_length_mla(hf["qk_nope_head_dim"] + rope)
    w.add_value_length_mla(hf["v_head_dim"])
    return _v3_mixture_out(w, {
        "first_k_dense_replace": hf["mlp_layer_types"].count("dense"), "n_routed_experts": hf["num_experts"],
        "num_experts_per_tok": hf["num_experts_per_token"], "moe_intermediate_size": hf["moe_intermediate_size"],
        "n_shared_experts": hf["num_shared_experts"], "n_group": hf["num_expert_group"], "topk_group": hf["topk_group"],
        "routed_scaling_factor": hf["routed_scaling_factor"], "norm_topk_prob": hf["moe_renormalize"]})


_TENSORS = (
    (r"\.A_log$", lambda t, hf: -torch.exp(t), lambda t, hf: torch.log(-t)),
    (r"\.[qkv]_conv1d\.weight$", lambda t, hf: t.reshape(1, t.shape[0], 1, t.shape[-1]),
     lambda t, hf: t.reshape(t.shape[1], 1, t.shape[-1])),
)

_RENAMED = ((".dt_bias", ".dt_proj.bias"), (".e_score_correction_bias", ".e_score_correction.bias"))
ARCHS = {
    "kimi-linear": Arch("kimi_linear", fields=_kimi, common=_kimi_common, write=_kimi_out, head_lengths=False,
                        rope=False, tensors=_TENSORS, renamed=_RENAMED,
                        split=((r"\.kv_b_proj\.weight$", (".k_b_proj.weight", ".v_b_proj.weight"), _kv_b_split,
                                _kv_b_join),)),
}
