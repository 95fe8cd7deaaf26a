"""Aria's language model (`model_type: aria_text`, transformers' AriaTextForCausalLM; Rhymes AI 2024, arXiv
2410.05993): LLaMA's attention and norms, and on every layer a mixture of moe_num_experts SwiGLU experts of width
intermediate_size: the top moe_topk of the router's logits, weighted by a softmax over the chosen logits (a softmax
over all experts, renormalised), beside moe_num_shared_experts shared experts that every token passes through
unweighted, fused as one MLP of moe_num_shared_experts * intermediate_size. The routed experts are always SiLU-gated,
the shared ones follow hidden_act (expert_ffn where the two differ).

Aria's checkpoints store the experts as `experts.fc1.weight` (E, C, 2I: gate then up along the last dim) and
`experts.fc2.weight` (E, I, C), inputs first (transformers' conversion_mapping renames them on load and back on
save); ours are (E, 2I, C) and (E, C, I), so both are transposed (layout experts_transposed). The full model
(`model_type: aria`) is aria.py's, with its images."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import _GLU, IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf
from .mapping import Rule

_M, _B = "model.layers.{i}.mlp.", "blocks.{i}.mlp."
RULES = [r for r in LLAMA_RULES if ".mlp." not in r.ours] + [
    Rule.of(_M + "router.weight", _B + "router.weight"),
    Rule.of(_M + "experts.fc1.weight", _B + "experts.gate_up", "experts_transposed"),
    Rule.of(_M + "experts.fc2.weight", _B + "experts.down", "experts_transposed"),
    Rule.of((_M + "shared_experts.gate_proj.weight", _M + "shared_experts.up_proj.weight"),
            _B + "shared.gate_up.weight"),
    Rule.of(_M + "shared_experts.down_proj.weight", _B + "shared.down.weight"),
]


def to_config(hf: dict) -> ModelConfig:
    if hf.get("mlp_bias") or hf.get("attention_bias"):
        raise LlmarchError("aria_text: attention_bias or mlp_bias is not supported (llmarch's experts would get "
                           "biases that Aria's routed experts do not have)")
    shared, width = int(hf.get("moe_num_shared_experts", 2)), int(hf.get("intermediate_size", 4096))
    if shared < 1:
        raise LlmarchError(f"aria_text: moe_num_shared_experts={shared}: Aria's mixture has shared experts")
    act = _GLU.get(hf.get("hidden_act", "silu"), hf.get("hidden_act"))
    return llama_like_config(
        {**hf, "intermediate_size": width}, n_experts=int(hf.get("moe_num_experts", 8)),
        experts_per_token=int(hf.get("moe_topk", 2)), expert_hidden=width, n_shared_experts=shared,
        router_renormalize=True, expert_ffn=None if act == "swiglu" else "swiglu")


def _needs(cfg: ModelConfig) -> str | None:
    if not cfg.n_experts or cfg.moe_period != 1 or cfg.moe_dense_first or not cfg.n_shared_experts \
            or cfg.shared_hidden != cfg.n_shared_experts * cfg.expert_hidden or cfg.shared_expert_gate \
            or cfg.expert_hidden != cfg.ffn_hidden or (cfg.expert_ffn or cfg.ffn) != "swiglu" or cfg.bias \
            or cfg.qkv_bias or cfg.router_scoring != "softmax" or not cfg.router_renormalize or cfg.expert_bias \
            or cfg.router_scale != 1.0 or cfg.router_groups != 1 or cfg.router_bias or cfg.shared_average:
        return ("a mixture on every layer of SwiGLU experts of ffn_hidden, chosen by softmax and renormalised, "
                "beside ungated shared experts, and no biases")
    return None


def from_config(cfg: ModelConfig) -> dict:
    return llama_like_hf(cfg, architectures=["AriaTextForCausalLM"], moe_num_experts=cfg.n_experts,
                         moe_topk=cfg.experts_per_token, moe_num_shared_experts=cfg.n_shared_experts)


FAMILIES.register("aria_text")(Family(RULES, to_config, from_config, IGNORE, needs=_needs))
