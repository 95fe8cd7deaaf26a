"""Qwen3-MoE (`model_type: qwen3_moe`): LLaMA's attention with a per-head RMSNorm on queries and keys
(qk_norm "head"), and FFNs that are mixtures of SwiGLU experts of width moe_intermediate_size on layers where
(i + 1) % decoder_sparse_step == 0 (dense, of width intermediate_size, elsewhere); top-k weights renormalised
when norm_topk_prob."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, causal_only, llama_like_config, llama_like_hf
from .mapping import Rule
from .mixtral import STACKED, check_exportable, moe_fields, moe_hf

_L = "model.layers.{i}."
RULES = LLAMA_RULES + [
    Rule.of(_L + "self_attn.q_norm.weight", "blocks.{i}.attn.q_norm.weight"),
    Rule.of(_L + "self_attn.k_norm.weight", "blocks.{i}.attn.k_norm.weight"),
    Rule.of(_L + "mlp.gate.weight", "blocks.{i}.mlp.router.weight"),
    Rule.of((_L + "mlp.experts.{e}.gate_proj.weight", _L + "mlp.experts.{e}.up_proj.weight"),
            "blocks.{i}.mlp.experts.gate_up"),
    Rule.of(_L + "mlp.experts.{e}.down_proj.weight", "blocks.{i}.mlp.experts.down"),
]


def to_config(hf: dict) -> ModelConfig:
    if hf.get("mlp_only_layers"):
        raise LlmarchError("Qwen3-MoE with mlp_only_layers is not supported (use decoder_sparse_step)")
    step = int(hf.get("decoder_sparse_step", 1))
    window = hf.get("sliding_window") if hf.get("use_sliding_window") else None
    return llama_like_config(hf, qk_norm="head", sliding_window=window, expert_hidden=hf["moe_intermediate_size"],
                             moe_period=step, moe_offset=step - 1,
                             router_renormalize=bool(hf.get("norm_topk_prob", False)), **moe_fields(hf))


def from_config(cfg: ModelConfig) -> dict:
    causal_only(cfg)
    check_exportable(cfg, "qwen3_moe")
    if cfg.qk_norm != "head" or cfg.moe_offset != cfg.moe_period - 1:
        raise LlmarchError("model_type qwen3_moe needs qk_norm 'head' and moe_offset = moe_period - 1")
    return llama_like_hf(cfg, architectures=["Qwen3MoeForCausalLM"], moe_intermediate_size=cfg.expert_hidden,
                         decoder_sparse_step=cfg.moe_period, mlp_only_layers=[], norm_topk_prob=cfg.router_renormalize,
                         use_sliding_window=cfg.sliding_window is not None, sliding_window=cfg.sliding_window,
                         **moe_hf(cfg))


FAMILIES.register("qwen3_moe")(Family(RULES, to_config, from_config, IGNORE, stacked_experts=STACKED))
