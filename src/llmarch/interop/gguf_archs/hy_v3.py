"""HY V3 (GGUF `hy_v3`, Tencent Hy3): LLaMA's blocks with per-head q/k RMSNorms before RoPE; a layer with a router
(`ffn_gate_inp`) is a mixture, routed by sigmoid scores plus `exp_probs_b` for the choice, renormalised where
`expert_weights_norm`, times `expert_weights_scale`, beside an ungated shared expert of
`expert_shared_feed_forward_length`; the others dense SwiGLUs. The gguf package (0.19) has no hy_v3: its tensors are
named by afmoe's map (HY V3's `mlp.shared_mlp` as afmoe's `mlp.shared_experts`, its `post_attention_layernorm` as
afmoe's `pre_mlp_layernorm`, `ffn_norm`), the expert bias `exp_probs_b` without `.bias`, as llama.cpp loads it.
A file that does not renormalise is refused (llmarch's HY V3 always does); the multi-token-prediction layers
(nextn_predict_layers) are not read."""
from __future__ import annotations

from ...errors import LlmarchError
from .arch import Arch, Meta
from .deepseek import SIGMOID


def _hy_v3(hf: dict, meta: Meta) -> dict:
    if meta.get("expert_gating_func", SIGMOID) != SIGMOID or not meta.get("expert_weights_norm", False):
        raise LlmarchError(f"{meta.path}: hy_v3 routing other than renormalised sigmoid scores is not supported")
    n = hf["num_hidden_layers"] - meta.get("nextn_predict_layers", 0)
    width = meta.get("expert_feed_forward_length", 0)
    return {**hf, "num_hidden_layers": n, "num_experts": meta.get("expert_count", 0),
            "num_experts_per_tok": meta.get("expert_used_count", 0), "moe_intermediate_size": width,
            "num_shared_experts": meta.get("expert_shared_feed_forward_length", width) // width if width else 0,
            "router_scaling_factor": meta.get("expert_weights_scale", 1.0) or 1.0,
            "mlp_layer_types": ["sparse" if meta.has(f"blk.{i}.ffn_gate_inp.weight") else "dense" for i in range(n)]}


def _hy_v3_out(w, hf: dict) -> dict:
    if hf.get("num_experts"):
        w.add_expert_count(hf["num_experts"])
        w.add_expert_used_count(hf["num_experts_per_tok"])
        w.add_expert_feed_forward_length(hf["moe_intermediate_size"])
        w.add_expert_shared_feed_forward_length(hf["num_shared_experts"] * hf["moe_intermediate_size"])
        w.add_uint32(f"{w.arch}.expert_gating_func", SIGMOID)
        w.add_expert_weights_norm(True)
        w.add_expert_weights_scale(hf["router_scaling_factor"])
    w.add_nextn_predict_layers(0)
    return {}


_SHARED = tuple((f".mlp.shared_mlp.{p}_proj.weight", f".mlp.shared_experts.{p}_proj.weight")
                for p in ("gate", "up", "down"))
ARCHS = {"hy_v3": Arch("hy_v3", names="afmoe", fields=_hy_v3, write=_hy_v3_out, mtp=True,
                       renamed=((".post_attention_layernorm.weight", ".pre_mlp_layernorm.weight"), *_SHARED))}
