"""AFMoE (GGUF `afmoe`, Arcee Trinity): llama.cpp's graph scales the embeddings by sqrt(d) always (mup_enabled), runs
per-head q/k RMSNorms, the output gate `attn_gate` (sigmoid, per element, before `attn_output`), the sandwich norms
(`post_attention_norm`, `ffn_norm`, `post_ffw_norm`), RoPE and a window of `attention.sliding_window` keys on every
layer but each 4th (fixed there: global_attn_every_n_layers 4), which sees every key without positions; then
`leading_dense_block_count` dense SwiGLUs and a mixture routed by sigmoid scores plus `exp_probs_b` for the choice,
renormalised where `expert_weights_norm`, times `expert_weights_scale`, beside the shared experts. Refused: reading
a file that does not renormalise (llmarch's AFMoE always does); writing a model without mup_enabled or whose layer
types are not that period of 4."""
from __future__ import annotations

from ...errors import LlmarchError
from .arch import Arch, Meta
from .deepseek import SIGMOID

EVERY = 4  # llama.cpp's afmoe graph: RoPE and the window on layers with (i + 1) % 4 != 0


def _afmoe(hf: dict, meta: Meta) -> dict:
    if meta.get("expert_gating_func", SIGMOID) != SIGMOID or not meta.get("expert_weights_norm", False):
        raise LlmarchError(f"{meta.path}: afmoe routing other than renormalised sigmoid scores is not supported")
    return {**hf, "sliding_window": meta.get("attention.sliding_window"), "global_attn_every_n_layers": EVERY,
            "layer_types": None, "mup_enabled": True, "num_experts": meta.get("expert_count", 0),
            "num_experts_per_tok": meta.get("expert_used_count", 0),
            "moe_intermediate_size": meta.get("expert_feed_forward_length", 0),
            "num_shared_experts": meta.get("expert_shared_count", 0),
            "num_dense_layers": meta.get("leading_dense_block_count", 0),
            "route_scale": meta.get("expert_weights_scale", 1.0) or 1.0}


def _afmoe_out(w, hf: dict) -> dict:
    every = ["sliding_attention" if (i + 1) % EVERY else "full_attention" for i in range(hf["num_hidden_layers"])]
    if not hf.get("mup_enabled"):
        raise LlmarchError("GGUF afmoe (llama.cpp) scales the embeddings by sqrt(hidden_size) always; this model has "
                           "mup_enabled false")
    if hf["layer_types"] != every:
        raise LlmarchError(f"GGUF afmoe (llama.cpp) slides every layer but each {EVERY}th; this model's layer_types "
                           f"are {hf['layer_types']}")
    w.add_sliding_window(hf["sliding_window"])
    w.add_leading_dense_block_count(hf["num_dense_layers"])
    if hf.get("num_experts"):
        w.add_expert_count(hf["num_experts"])
        w.add_expert_used_count(hf["num_experts_per_tok"])
        w.add_expert_feed_forward_length(hf["moe_intermediate_size"])
        w.add_expert_shared_count(hf["num_shared_experts"])
        w.add_uint32(f"{w.arch}.expert_gating_func", SIGMOID)
        w.add_expert_weights_norm(True)
        w.add_expert_weights_scale(hf["route_scale"])
    return {}


ARCHS = {"afmoe": Arch("afmoe", fields=_afmoe, write=_afmoe_out,
                       renamed=((".mlp.expert_bias", ".mlp.expert_bias.bias"),))}
