"""Qwen2-MoE / Qwen1.5-MoE (`model_type: qwen2_moe`): Qwen2's attention (biases on q, k, v only; `qkv_bias`), and
FFNs that are mixtures of SwiGLU experts of width moe_intermediate_size on layers where
(i + 1) % decoder_sparse_step == 0 and i is not in mlp_only_layers (dense, of width intermediate_size,
elsewhere): a softmax router picks num_experts_per_tok experts (top-k weights renormalised when norm_topk_prob),
plus one shared expert of width shared_expert_intermediate_size whose output every token gets, scaled by
sigmoid(x w) (shared_expert_gate, a 1-output linear).

In llmarch the shared expert is n_shared_experts expert-wide ones fused into one MLP (layers/moe.py; 4 in
Qwen1.5-MoE-A2.7B, 8 in Qwen2-57B-A14B), or one of shared_hidden where the width is not a multiple of the
experts'; dense layers are the first moe_dense_first and those off the step, so mlp_only_layers must be a prefix
0..k-1. Other variants are refused in one line naming the key."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf
from .mapping import Rule
from .mixtral import STACKED, shared_fields

_L = "model.layers.{i}.mlp."
RULES = LLAMA_RULES + [
    Rule.of(_L + "gate.weight", "blocks.{i}.mlp.router.weight"),
    Rule.of((_L + "experts.{e}.gate_proj.weight", _L + "experts.{e}.up_proj.weight"), "blocks.{i}.mlp.experts.gate_up"),
    Rule.of(_L + "experts.{e}.down_proj.weight", "blocks.{i}.mlp.experts.down"),
    Rule.of((_L + "shared_expert.gate_proj.weight", _L + "shared_expert.up_proj.weight"),
            "blocks.{i}.mlp.shared.gate_up.weight"),
    Rule.of(_L + "shared_expert.down_proj.weight", "blocks.{i}.mlp.shared.down.weight"),
    Rule.of(_L + "shared_expert_gate.weight", "blocks.{i}.mlp.shared_gate.weight"),
]


def _window(hf: dict) -> int | None:
    """Qwen2's rule: a sliding window only where every layer slides (transformers' default slides every other)."""
    if not hf.get("use_sliding_window"):
        return None
    if set(hf.get("layer_types") or ["sliding_attention"]) != {"sliding_attention"}:
        raise LlmarchError("qwen2_moe: use_sliding_window on some layers only is not supported (layer_types)")
    return hf.get("sliding_window")


def _moe(hf: dict) -> dict:
    experts = int(hf.get("num_experts", 0))
    if not experts:
        return {}
    step, width = int(hf.get("decoder_sparse_step", 1)), hf["moe_intermediate_size"]
    shared = int(hf.get("shared_expert_intermediate_size", 0))
    if shared <= 0:
        raise LlmarchError(f"qwen2_moe: shared_expert_intermediate_size={shared}: llmarch's Qwen2-MoE has a shared "
                           "expert")
    dense = sorted(hf.get("mlp_only_layers") or [])
    if dense != list(range(len(dense))):
        raise LlmarchError(f"qwen2_moe: mlp_only_layers={dense} is not supported (llmarch's dense layers are the "
                           "first k, [0 .. k-1], and those off decoder_sparse_step)")
    return dict(n_experts=experts, experts_per_token=int(hf.get("num_experts_per_tok", 4)), expert_hidden=width,
                moe_period=step, moe_offset=step - 1, moe_dense_first=len(dense), **shared_fields(shared, width),
                shared_expert_gate=True, router_renormalize=bool(hf.get("norm_topk_prob", False)),
                router_aux_loss_weight=float(hf.get("router_aux_loss_coef", 0.0)))


def to_config(hf: dict) -> ModelConfig:
    return llama_like_config({**hf, "attention_bias": False, "mlp_bias": False},
                             qkv_bias=bool(hf.get("qkv_bias", True)), sliding_window=_window(hf), **_moe(hf))


def from_config(cfg: ModelConfig) -> dict:
    if cfg.bias or cfg.qk_norm != "none" or cfg.norm != "rmsnorm" or cfg.layer_types:
        raise LlmarchError("model_type qwen2_moe has RMSNorm, no QK-norm, no per-layer types, and no biases but "
                           "q, k, v's")
    moe = dict(num_experts=0, mlp_only_layers=[])
    if cfg.n_experts:
        if (cfg.moe_offset != cfg.moe_period - 1 or cfg.capacity_factor is not None or cfg.expert_capacity is not None
                or cfg.router_scoring != "softmax" or cfg.expert_bias or cfg.router_bias or cfg.router_groups > 1
                or cfg.router_scale != 1.0):
            raise LlmarchError("model_type qwen2_moe's experts sit where (i + 1) % moe_period == 0, routed by a "
                               "softmax without capacity, bias, groups or router_scale")
        if not (cfg.n_shared_experts and cfg.shared_expert_gate):
            raise LlmarchError("model_type qwen2_moe needs a shared expert gated by sigmoid (n_shared_experts > 0, "
                               "shared_expert_gate)")
        moe = dict(num_experts=cfg.n_experts, num_experts_per_tok=cfg.experts_per_token,
                   moe_intermediate_size=cfg.expert_hidden,
                   shared_expert_intermediate_size=cfg.shared_hidden,
                   decoder_sparse_step=cfg.moe_period, mlp_only_layers=list(range(cfg.moe_dense_first)),
                   norm_topk_prob=cfg.router_renormalize, router_aux_loss_coef=cfg.router_aux_loss_weight)
    if cfg.sliding_window is not None:  # on every layer (transformers' default slides every other)
        moe.update(use_sliding_window=True, sliding_window=cfg.sliding_window,
                   layer_types=["sliding_attention"] * cfg.n_layers)
    out = llama_like_hf(cfg, architectures=["Qwen2MoeForCausalLM"], qkv_bias=cfg.qkv_bias, **moe)
    for key in ("attention_bias", "mlp_bias"):
        out.pop(key)
    return out


FAMILIES.register("qwen2_moe")(Family(RULES, to_config, from_config, IGNORE, stacked_experts=STACKED))
