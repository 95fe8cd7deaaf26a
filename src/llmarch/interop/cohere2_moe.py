"""Cohere2-MoE (`model_type: cohere2_moe`; Cohere 2026): Command R7B's layout (cohere.py: a parallel block under one
norm without bias, adjacent-pair RoPE on sliding layers and none on full ones, the logit scale, the tied head), the
norm an RMSNorm where rms_norm_eps is given (else LayerNorm), and after the dense layers mlp_layer_types names
(SwiGLU of prefix_dense_intermediate_size) a mixture of SwiGLU experts of intermediate_size: top-k of the router's
logits, weighted by their softmax (expert_selection_fn "softmax", our softmax renormalised over the chosen) or by
their sigmoids, renormalised where norm_topk_prob; num_shared_experts shared experts fused, their output summed
with the routed experts' or averaged with it (shared_expert_combination_strategy: shared_average). Where
prefix_dense_sliding_window_pattern is 1, the dense layers' full attention keeps RoPE (transformers' force_rope):
their own layer type, `full_attention_rope`."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .cohere import RULES as COHERE_RULES, to_config as cohere_config
from .deepseek_v2 import dense_first, first_dense, moe_rules
from .hf import FAMILIES, Family
from .llama import IGNORE, llama_like_hf
from .qwen3 import FULL, nope_window_hf

RULES = COHERE_RULES + moe_rules()
FULL_ROPE = "full_attention_rope"  # a dense first layer's full attention with RoPE (force_rope)


def to_config(hf: dict) -> ModelConfig:
    selection = hf.get("expert_selection_fn", "softmax")
    combine = hf.get("shared_expert_combination_strategy", "average")
    if selection not in ("softmax", "sigmoid") or combine not in ("sum", "average"):
        raise LlmarchError(f"cohere2_moe: expert_selection_fn {selection!r} or shared_expert_combination_strategy "
                           f"{combine!r} is not supported (softmax or sigmoid; sum or average)")
    experts, shared = int(hf["intermediate_size"]), int(hf.get("num_shared_experts") or 0)
    cfg = cohere_config({**hf, "model_type": "cohere2", "intermediate_size": hf.get("prefix_dense_intermediate_size")
                         or experts})
    norm = {} if hf.get("rms_norm_eps") is None else dict(norm="rmsnorm", norm_eps=float(hf["rms_norm_eps"]))
    dense = dense_first({**hf, "first_k_dense_replace": 0})
    if cfg.layer_types is not None and hf.get("prefix_dense_sliding_window_pattern", 1) == 1:
        types = [FULL_ROPE if i < dense and t == FULL else t for i, t in enumerate(cfg.layer_types)]
        overrides = {t: o for t, o in cfg.layer_overrides.items() if t in types}
        cfg = cfg.replace(layer_types=types, layer_overrides=overrides or None)
    return cfg.replace(
        hf_model_type="cohere2_moe", n_experts=int(hf["num_experts"]), experts_per_token=int(hf["num_experts_per_tok"]),
        expert_hidden=experts, moe_dense_first=dense,
        router_scoring=selection, router_renormalize=selection == "softmax" or bool(hf.get("norm_topk_prob", True)),
        n_shared_experts=shared, shared_average=bool(shared) and combine == "average", **norm)


def from_config(cfg: ModelConfig) -> dict:
    if not cfg.n_experts or cfg.expert_bias or cfg.router_groups > 1 or cfg.router_scale != 1.0 or cfg.moe_period != 1 \
            or cfg.shared_expert_gate or cfg.capacity_factor is not None or cfg.expert_capacity is not None \
            or cfg.router_scoring not in ("softmax", "sigmoid") or cfg.router_scoring == "softmax" \
            and not cfg.router_renormalize or cfg.shared_hidden != cfg.n_shared_experts * cfg.expert_hidden:
        raise LlmarchError("model_type cohere2_moe routes the top-k experts by softmax (renormalised) or sigmoid "
                           "scores, without expert bias, groups or scale, after dense first layers, with ungated "
                           "shared experts of the experts' width")
    if cfg.norm not in ("layernorm", "rmsnorm") or cfg.norm_bias or cfg.block != "parallel" or not cfg.shared_norm \
            or cfg.bias or cfg.qkv_bias or cfg.qk_norm != "none" or cfg.ffn != "swiglu":
        raise LlmarchError("model_type cohere2_moe needs a parallel block under one norm without bias, SwiGLU and "
                           "no biases or QK-norm")
    k = first_dense(cfg)
    rms = cfg.norm == "rmsnorm"
    types = cfg.layer_types or []
    roped = [i for i, t in enumerate(types) if t == FULL_ROPE]
    if any(i >= k for i in roped) or roped and FULL in types[:k]:
        raise LlmarchError(f"model_type cohere2_moe has full layers with RoPE ({FULL_ROPE}) only among the dense first "
                           "layers, and then all of their full layers")
    plain = [FULL if t == FULL_ROPE else t for t in types] or None
    overrides = dict(cfg.layer_overrides or {})
    if plain and FULL in plain:  # the full layers as nope_window_hf reads them: without positions
        overrides[FULL] = {"positions": "none"}
    window = nope_window_hf(cfg.replace(layer_types=plain, layer_overrides=overrides or None))
    out = llama_like_hf(cfg, architectures=["Cohere2MoeForCausalLM"], logit_scale=1.0 / cfg.logit_divisor,
                        layer_norm_eps=cfg.norm_eps, rms_norm_eps=cfg.norm_eps if rms else None,
                        intermediate_size=cfg.expert_hidden, prefix_dense_intermediate_size=cfg.ffn_hidden,
                        num_experts=cfg.n_experts, num_experts_per_tok=cfg.experts_per_token,
                        num_shared_experts=cfg.n_shared_experts, expert_selection_fn=cfg.router_scoring,
                        norm_topk_prob=cfg.router_renormalize,
                        shared_expert_combination_strategy="average" if cfg.shared_average else "sum",
                        mlp_layer_types=["dense"] * k + ["sparse"] * (cfg.n_layers - k),
                        prefix_dense_sliding_window_pattern=1 if roped or FULL not in types[:k] else 4, **window)
    out.pop("mlp_bias")
    return out


FAMILIES.register("cohere2_moe")(Family(RULES, to_config, from_config, IGNORE))
