"""DBRX (GGUF "dbrx", convert_hf_to_gguf.py's DbrxModel; llama.cpp's llm_build_dbrx): the fused Wqkv as attn_qkv
(q | k | v, as Hugging Face holds it, RoPE in halves: NeoX), clamped by attention.clamp_kqv, which llama.cpp applies
unconditionally (a file without it clamps to 0: a model without clip_qkv is refused on the way out); LayerNorms
without bias (norm_2 as attn_out_norm), eps 1e-5; the experts' fused w1, v1, w2 (E * I, C) viewed as (E, I, C), w2
then transposed to (E, C, I), as ffn_gate_exps, ffn_up_exps, ffn_down_exps; the router ffn_gate_inp; softmax top-k
renormalised to sum to 1 (llama.cpp's norm_w), which is DBRX's moe_normalize_expert_weights 1, the one it writes
and reads."""
from __future__ import annotations

import math

import torch

from ...errors import LlmarchError
from .arch import Arch, Meta

_EPS = 1e-5  # the converter's add_layer_norm_eps(1e-5): DBRX's nn.LayerNorm default


def _dbrx(hf: dict, meta: Meta) -> dict:
    """The file's llama-like fields as DBRX's config.json (attn_config, ffn_config)."""
    eps = meta.get("attention.layer_norm_epsilon", _EPS)
    if not math.isclose(eps, _EPS, rel_tol=1e-6) or hf.get("rope_scaling"):
        raise LlmarchError(f"{meta.path}: GGUF dbrx with layer_norm_epsilon {eps} or RoPE scaling is not DBRX's")
    theta = hf["rope_theta"]
    return {"model_type": "dbrx", "_name_or_path": hf["_name_or_path"], "vocab_size": hf["vocab_size"],
            "d_model": hf["hidden_size"], "n_heads": hf["num_attention_heads"], "n_layers": hf["num_hidden_layers"],
            "max_seq_len": hf["max_position_embeddings"], "tie_word_embeddings": hf["tie_word_embeddings"],
            "eos_token_id": hf["eos_token_id"], "rope_parameters": {"rope_type": "default", "rope_theta": theta},
            "attn_config": {"clip_qkv": meta.get("attention.clamp_kqv", None),
                            "kv_n_heads": hf["num_key_value_heads"], "rope_theta": theta},
            "ffn_config": {"ffn_hidden_size": hf["intermediate_size"], "moe_num_experts": meta.get("expert_count"),
                           "moe_top_k": meta.get("expert_used_count"), "moe_normalize_expert_weights": 1.0}}


def _common(hf: dict) -> dict:
    """DBRX's config.json as the names the common metadata is written from."""
    attn, ffn = hf["attn_config"], hf["ffn_config"]
    return {**hf, "num_hidden_layers": hf["n_layers"], "max_position_embeddings": hf["max_seq_len"],
            "hidden_size": hf["d_model"], "intermediate_size": ffn["ffn_hidden_size"],
            "num_attention_heads": hf["n_heads"], "num_key_value_heads": attn["kv_n_heads"]}


def _dbrx_out(w, hf: dict) -> dict:
    """DbrxModel.set_gguf_parameters' keys; what llama.cpp's graph computes otherwise is refused."""
    attn, ffn = hf["attn_config"], hf["ffn_config"]
    if attn.get("clip_qkv") is None:
        raise LlmarchError("GGUF dbrx: llama.cpp clamps q, k, v by attention.clamp_kqv always (to 0 without one); "
                           "this model has no clip_qkv")
    if ffn.get("moe_normalize_expert_weights") != 1.0 or ffn["ffn_act_fn"]["name"] != "silu":
        raise LlmarchError(f"GGUF dbrx: llama.cpp's graph renormalises the top-k weights to sum to 1 and runs SiLU "
                           f"experts; this model has moe_normalize_expert_weights "
                           f"{ffn.get('moe_normalize_expert_weights')} and {ffn['ffn_act_fn']['name']}")
    if hf["rope_parameters"].get("rope_type", "default") != "default":
        raise LlmarchError("GGUF dbrx: the converter writes no RoPE scaling; this model has "
                           f"{hf['rope_parameters']['rope_type']}")
    w.add_layer_norm_eps(_EPS)
    w.add_clamp_kqv(attn["clip_qkv"])
    w.add_expert_count(ffn["moe_num_experts"])
    w.add_expert_used_count(ffn["moe_top_k"])
    return {}


def _experts(t: torch.Tensor, hf: dict) -> torch.Tensor:
    return t.reshape(hf["ffn_config"]["moe_num_experts"], -1, t.shape[-1])  # (E * I, C) -> (E, I, C)


_W = r"\.ffn\.experts\.mlp\."
ARCHS = {
    "dbrx": Arch("dbrx", fields=_dbrx, common=_common, write=_dbrx_out, layer_norm=True,
                 renamed=tuple((f".experts.mlp.{n}", f".experts.mlp.{n}.weight") for n in ("w1", "v1", "w2")),
                 tensors=((_W + "[wv]1$", _experts, lambda t, hf: t.reshape(-1, t.shape[-1])),
                          (_W + "w2$", lambda t, hf: _experts(t, hf).transpose(1, 2),
                           lambda t, hf: t.transpose(1, 2).reshape(-1, t.shape[1])))),
}
