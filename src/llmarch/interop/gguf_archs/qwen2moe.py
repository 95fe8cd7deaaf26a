"""Qwen2-MoE / Qwen1.5-MoE (GGUF `qwen2moe`, convert_hf_to_gguf.py's Qwen2MoeModel): Qwen2's attention (q, k, v
biases where the file has attn_q.bias), a softmax router (ffn_gate_inp) over stacked experts (ffn_{gate,up,down}_exps)
of width expert_feed_forward_length, and the shared expert (ffn_{gate,up,down}_shexp, expert_shared_feed_forward_
length wide) scaled by sigmoid of its 1-output gate (ffn_gate_inp_shexp, which llama.cpp reads as a vector); the
router and that gate stay F32. The converter writes expert_count, expert_used_count and the two widths. llama.cpp
requires output.weight: a tied head is written as a copy of the embedding, and a file whose output.weight equals
token_embd.weight reads as tied.

What llama.cpp (llama-model.cpp, models/qwen2moe.cpp) cannot represent, and writing refuses: no experts or dense
layers (it requires ffn_gate_inp in every layer: decoder_sparse_step 1, no mlp_only_layers), and renormalised
top-k weights (its graph calls build_moe_ffn with norm_w false: the softmax's own weights, norm_topk_prob false,
as Qwen1.5-MoE and Qwen2-57B-A14B ship)."""
from __future__ import annotations

from ...errors import LlmarchError
from .arch import Arch, Meta


def _qwen2moe(hf: dict, meta: Meta) -> dict:
    """The config.json fields from the keys; where the converter wrote none, llama.cpp's own values (the experts
    n_ff / n_expert_used wide, the shared expert n_ff wide)."""
    experts = meta.get("expert_count", 0)
    if not experts:
        raise LlmarchError(f"{meta.path}: a qwen2moe file without experts (llama.cpp refuses it too)")
    used, ff = meta.get("expert_used_count"), hf["intermediate_size"]
    return {**hf, "tie_word_embeddings": hf["tie_word_embeddings"] or meta.same("output.weight", "token_embd.weight"),
            "qkv_bias": hf["attention_bias"], "num_experts": experts, "num_experts_per_tok": used,
            "moe_intermediate_size": meta.get("expert_feed_forward_length", ff // used),
            "shared_expert_intermediate_size": meta.get("expert_shared_feed_forward_length", ff),
            "decoder_sparse_step": 1, "mlp_only_layers": [], "norm_topk_prob": False}


def _qwen2moe_out(w, hf: dict) -> dict:
    if not hf["num_experts"] or hf["decoder_sparse_step"] != 1 or hf["mlp_only_layers"]:
        raise LlmarchError("GGUF qwen2moe (llama.cpp) needs a mixture of experts in every layer "
                           "(decoder_sparse_step 1, no mlp_only_layers)")
    if hf["norm_topk_prob"]:
        raise LlmarchError("GGUF qwen2moe (llama.cpp) does not renormalise the top-k weights; this model does "
                           "(norm_topk_prob, router_renormalize)")
    w.add_expert_count(hf["num_experts"])
    w.add_expert_used_count(hf["num_experts_per_tok"])
    w.add_expert_feed_forward_length(hf["moe_intermediate_size"])
    w.add_expert_shared_feed_forward_length(hf["shared_expert_intermediate_size"])
    return {}


# llama.cpp's qwen2moe requires output.weight: a tied head is written as a copy of the embedding (head_copy), which
# reads back as tied
ARCHS = {"qwen2moe": Arch("qwen2_moe", fields=_qwen2moe, write=_qwen2moe_out, head_copy=True)}
