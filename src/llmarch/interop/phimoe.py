"""Phi-3.5-MoE (`model_type: phimoe`; Microsoft 2024, Phi-3.5-MoE-instruct, and GRIN-MoE): Mixtral's layout
(block_sparse_moe: the router `gate`, experts w1 gate, w3 up, w2 down) with LayerNorms with biases (their epsilon
named rms_norm_eps), q, k, v and o biases where attention_bias (an MLP without), an LM head bias where lm_head_bias,
Phi-3's LongRoPE (phi3.py) whose attention factor is the config's short_mscale (= long_mscale, as published;
different ones are refused), and SparseMixer routing (router_scoring 'sparsemixer', its eps router_jitter_noise;
layers/router.py); input_jitter_noise is the router input's training jitter. transformers' PhimoeRotaryEmbedding
recomputes its frequencies from the short factors at every call, so its long factors never apply; llmarch applies
them past original_max_position_embeddings as Phi-3 does, so the two differ there where the factors differ."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, llama_like_config, llama_like_hf
from .mapping import Rule
from .mixtral import RULES as MIXTRAL_RULES, STACKED
from .phi3 import _rope, rope_params


def longrope_factor(cfg: ModelConfig) -> float:
    """LongRoPE's default attention factor, sqrt(1 + ln(factor) / ln(original context)) (Phi-3's), 1 unstretched."""
    import math

    if cfg.rope_factor <= 1.0:
        return 1.0
    return math.sqrt(1 + math.log(cfg.rope_factor) / math.log(cfg.rope_original_context))

_L = "model.layers.{i}."
RULES = [r for r in MIXTRAL_RULES if "layernorm" not in r.hf[0] and "model.norm" not in r.hf[0]] + [
    *[Rule.of(_L + f"{hf}.{w}", f"blocks.{{i}}.{ours}.{w}") for hf, ours in (("input_layernorm", "ln1"),
                                                                             ("post_attention_layernorm", "ln2"))
      for w in ("weight", "bias")],
    Rule.of("model.norm.weight", "ln_final.weight"),
    Rule.of("model.norm.bias", "ln_final.bias"),
    Rule.of("lm_head.bias", "lm_head.bias"),
]


def to_config(hf: dict) -> ModelConfig:
    if hf.get("hidden_act", "silu") != "silu" or int(hf.get("num_experts_per_tok", 2)) != 2:
        raise LlmarchError("phimoe: only SiLU experts, two per token (SparseMixer's top-2), are supported")
    params = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    if params.get("short_mscale") != params.get("long_mscale"):
        raise LlmarchError(f"phimoe: short_mscale {params.get('short_mscale')} and long_mscale "
                           f"{params.get('long_mscale')} differ; only equal ones (as published) are supported")
    plain, rope = _rope(hf)
    if params.get("short_mscale") is not None:
        rope["rope_attn_factor"] = float(params["short_mscale"])
    biased = bool(hf.get("attention_bias", False))
    return llama_like_config(
        {**plain, "attention_bias": False, "mlp_bias": False}, norm="layernorm", norm_bias=True,
        norm_eps=hf.get("rms_norm_eps", 1e-5),
        qkv_bias=biased, o_bias=biased, head_bias=bool(hf.get("lm_head_bias", False)),
        sliding_window=hf.get("sliding_window"), n_experts=int(hf["num_local_experts"]), experts_per_token=2,
        router_scoring="sparsemixer", router_renormalize=False,
        sparsemixer_eps=float(hf.get("router_jitter_noise", 0.01)),
        router_jitter=float(hf.get("input_jitter_noise", 0.0)),
        router_aux_loss_weight=float(hf.get("router_aux_loss_coef", 0.0)), **rope)


def from_config(cfg: ModelConfig) -> dict:
    if cfg.router_scoring != "sparsemixer" or cfg.experts_per_token != 2 or cfg.moe_period != 1 \
            or cfg.expert_hidden != cfg.ffn_hidden or cfg.n_shared_experts or cfg.capacity_factor is not None:
        raise LlmarchError("model_type phimoe routes every layer's two experts by SparseMixer, without shared "
                           "experts or capacity")
    if cfg.norm != "layernorm" or not cfg.norm_bias or cfg.bias or cfg.qkv_bias != cfg.o_bias \
            or cfg.qk_norm != "none" or cfg.layer_types is not None:
        raise LlmarchError("model_type phimoe has LayerNorms with biases, q, k, v and o biased alike, unbiased "
                           "experts, and no QK-norm or layer types")
    params = rope_params(cfg)
    if cfg.rope_scaling == "longrope":  # its attention factor as the mscales phimoe's config requires
        params["short_mscale"] = params["long_mscale"] = params.pop("attention_factor", None) or longrope_factor(cfg)
    out = llama_like_hf(cfg, architectures=["PhimoeForCausalLM"], rope_parameters=params,
                        sliding_window=cfg.sliding_window, num_local_experts=cfg.n_experts, num_experts_per_tok=2,
                        router_jitter_noise=cfg.sparsemixer_eps, input_jitter_noise=cfg.router_jitter,
                        router_aux_loss_coef=cfg.router_aux_loss_weight, lm_head_bias=cfg.head_bias,
                        attention_bias=cfg.qkv_bias,
                        original_max_position_embeddings=cfg.rope_original_context or cfg.context_length)
    out.pop("mlp_bias")
    return out


FAMILIES.register("phimoe")(Family(RULES, to_config, from_config, IGNORE, stacked_experts=STACKED))
