"""LLaMA and the families written as it or as its close kin (Mixtral, Mistral, Qwen2/3, Qwen3-MoE, OLMo 2,
SmolLM3)."""
from __future__ import annotations

from .arch import Arch, Meta


def _llama(hf: dict, meta: Meta) -> dict:
    """llama with experts (ffn_gate_inp, ffn_*_exps, expert_count) is Mixtral: convert_hf_to_gguf.py writes
    MixtralForCausalLM as LlamaModel, and llama.cpp renormalises the top-k weights for it."""
    experts = meta.get("expert_count", 0)
    if not experts:
        return hf
    return {**hf, "model_type": "mixtral", "num_local_experts": experts,
            "num_experts_per_tok": meta.get("expert_used_count")}


def _qwen3moe(hf: dict, meta: Meta) -> dict:
    """Qwen3-MoE: every layer a mixture (llama.cpp has no dense layers for it, so decoder_sparse_step 1) of
    experts of width expert_feed_forward_length, top-k weights renormalised (llama.cpp's qwen3moe graph always
    does, as the released models' norm_topk_prob)."""
    return {**hf, "num_experts": meta.get("expert_count"), "num_experts_per_tok": meta.get("expert_used_count"),
            "moe_intermediate_size": meta.get("expert_feed_forward_length"), "decoder_sparse_step": 1,
            "norm_topk_prob": True}


def _smollm3(hf: dict, meta: Meta) -> dict:
    """SmolLM3: every fourth layer without RoPE (NoPE); llama.cpp fixes that step at 4 (n_no_rope_layer_step),
    and its converter stores no per-layer list."""
    return {**hf, "no_rope_layer_interval": 4}


def _experts_out(w, hf: dict) -> dict:
    """The MoE keys convert_hf_to_gguf.py writes (TextModel: expert_count, expert_used_count; Qwen3MoeModel
    also expert_feed_forward_length), where the model has experts."""
    if hf.get("num_local_experts"):
        w.add_expert_count(hf["num_local_experts"])
        w.add_expert_used_count(hf["num_experts_per_tok"])
    if hf.get("moe_intermediate_size"):
        w.add_expert_feed_forward_length(hf["moe_intermediate_size"])
    return {}


ARCHS = {
    "llama": Arch("llama", permuted_qk=True, fields=_llama, write=_experts_out, also=("mixtral", "mistral")),
    "qwen3moe": Arch("qwen3_moe", fields=_qwen3moe, write=_experts_out),
    "olmo2": Arch("olmo2"),
    "smollm3": Arch("smollm3", permuted_qk=True, fields=_smollm3),
    "qwen2": Arch("qwen2"),
    "qwen3": Arch("qwen3"),
}
