"""Jais-2 (`model_type: jais2`; Inception / MBZUAI 2025, Jais-2-8B; transformers' Jais2ForCausalLM): LLaMA's
attention (GQA, RoPE in halves) in pre-norm blocks whose norms are LayerNorms with biases (`input_layernorm`,
`post_attention_layernorm`, `model.norm`, eps `layer_norm_eps`), and Nemotron's ungated squared-ReLU MLP (`up_proj`,
`down_proj`; ffn 'relu2', So et al. 2021, "Primer"). `attention_bias` covers q, k, v and o (qkv_bias, o_bias),
`mlp_bias` the MLP (bias); both are true in the config's defaults, as in Jais-2-8B."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, llama_like_config, llama_like_hf
from .nemotron import RULES as NEMOTRON_RULES

RULES = NEMOTRON_RULES  # LLaMA's attention, up/down MLP, and norm gains with biases under LLaMA's names


def to_config(hf: dict) -> ModelConfig:
    if hf.get("hidden_act", "relu2") != "relu2":
        raise LlmarchError(f"jais2: hidden_act {hf['hidden_act']!r} is not supported (relu2)")
    attn_bias, mlp_bias = bool(hf.get("attention_bias", True)), bool(hf.get("mlp_bias", True))
    return llama_like_config({**hf, "hidden_act": "relu2", "attention_bias": mlp_bias, "mlp_bias": mlp_bias},
                             qkv_bias=attn_bias, o_bias=attn_bias, norm="layernorm", norm_bias=True,
                             norm_eps=hf.get("layer_norm_eps", 1e-5))


def from_config(cfg: ModelConfig) -> dict:
    o_bias = cfg.bias if cfg.o_bias is None else cfg.o_bias
    if cfg.ffn != "relu2" or cfg.norm != "layernorm" or not cfg.norm_bias or cfg.norm_placement != "pre" \
            or cfg.qk_norm != "none" or cfg.sliding_window is not None or cfg.layer_types is not None \
            or bool(cfg.qkv_bias) != o_bias or cfg.rope_fraction != 1.0:
        raise LlmarchError("model_type jais2 needs a squared-ReLU MLP, pre-norm LayerNorms with biases, one bias "
                           "setting for q, k, v and o, full RoPE and no QK-norm, windows or layer types")
    out = llama_like_hf(cfg.replace(ffn="swiglu"), architectures=["Jais2ForCausalLM"], hidden_act="relu2",
                        layer_norm_eps=cfg.norm_eps, attention_bias=o_bias)
    out.pop("rms_norm_eps")
    return out


FAMILIES.register("jais2")(Family(RULES, to_config, from_config, IGNORE))
