"""JetBrains Mellum 2 (`model_type: mellum`, transformers' MellumForCausalLM, JetBrains/Mellum2-12B-A2.5B-Base):
Qwen3-MoE's attention (a per-head RMSNorm on q and k before RoPE, qk_norm 'head'; q, k, v, o biases with
attention_bias) and mixtures (softmax router, top-k weights renormalised where norm_topk_prob), with Laguna's layer
types (laguna.py): full and sliding-window layers, each type its own RoPE base (by default 500000 for full layers,
10000 for sliding ones, all of each head rotated), and the dense layers mlp_layer_types names first (by default
none). The multi-token-prediction layer a checkpoint may hold (mtp.*) is not loaded, as transformers does not load
it."""
from __future__ import annotations

from ..config import ModelConfig
from .deepseek_v2 import dense_first, first_dense
from .hf import FAMILIES, Family
from .laguna import layer_fields, layer_hf
from .llama import IGNORE as LLAMA_IGNORE, llama_like_config, llama_like_hf
from .mixtral import STACKED, moe_fields
from .qwen3 import FULL, SLIDING
from .qwen3_moe import RULES

IGNORE = LLAMA_IGNORE + (r"^mtp\.",)
_DEFAULT_ROPE = {FULL: {"rope_theta": 500000.0}, SLIDING: {"rope_theta": 10000.0}}


def to_config(hf: dict) -> ModelConfig:
    bias, mlp_types = bool(hf.get("attention_bias", False)), hf.get("mlp_layer_types") or ["sparse"]  # all sparse
    return llama_like_config({**hf, "attention_bias": False, "mlp_bias": False}, qkv_bias=bias, o_bias=bias,
                             qk_norm="head", expert_hidden=int(hf.get("moe_intermediate_size", 896)),
                             router_renormalize=bool(hf.get("norm_topk_prob", True)),
                             moe_dense_first=dense_first({**hf, "mlp_layer_types": mlp_types}),
                             **moe_fields(hf), **layer_fields(hf, _DEFAULT_ROPE))


def _needs(cfg: ModelConfig) -> str | None:
    if cfg.qk_norm != "head" or cfg.qkv_bias != cfg.o_bias or cfg.bias or cfg.value_width != cfg.head_dim \
            or cfg.attn_output_gate:
        return "a per-head QK-norm, the same bias on q, k, v and o, none on the MLP, values of head_dim and no gate"
    if any(set(f) - {"sliding_window", "rope_theta", "rope_fraction"} for f in (cfg.layer_overrides or {}).values()):
        return "layer types that change sliding_window, rope_theta and rope_fraction only"
    if not cfg.n_experts or cfg.router_scoring != "softmax" or cfg.expert_bias or cfg.router_groups > 1 \
            or cfg.n_shared_experts or cfg.router_scale != 1.0 or cfg.router_softcap is not None \
            or cfg.capacity_factor is not None or cfg.expert_capacity is not None or cfg.moe_period != 1:
        return "a mixture routed by softmax, without expert bias, groups, scale, soft-cap, capacity or shared experts"
    return None


def from_config(cfg: ModelConfig) -> dict:
    k = first_dense(cfg)
    out = llama_like_hf(cfg, architectures=["MellumForCausalLM"], num_local_experts=cfg.n_experts,
                        num_experts_per_tok=cfg.experts_per_token, moe_intermediate_size=cfg.expert_hidden,
                        norm_topk_prob=cfg.router_renormalize, router_aux_loss_coef=cfg.router_aux_loss_weight,
                        mlp_layer_types=["dense"] * k + ["sparse"] * (cfg.n_layers - k), **layer_hf(cfg))
    out.pop("mlp_bias")
    out.pop("num_attention_heads_per_layer")
    return out


FAMILIES.register("mellum")(Family(RULES, to_config, from_config, IGNORE, stacked_experts=STACKED, needs=_needs))
