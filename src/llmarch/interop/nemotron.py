"""Nemotron (`model_type: nemotron`: Nemotron-4, Minitron 4B/8B; NVIDIA 2024, "Nemotron-4 15B Technical Report"):
LLaMA's attention with RoPE on the first half of each head (partial_rotary_factor 0.5, LLaMA's halves), LayerNorms
with biases whose gains are stored as g - 1 (LayerNorm1P: norm 'layernorm1p'), and an ungated squared-ReLU MLP
(`up_proj`, `down_proj`; ffn 'relu2'). attention_bias covers q, k, v and o; mlp_bias the MLP."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .arcee import RULES as ARCEE_RULES
from .hf import FAMILIES, Family
from .llama import IGNORE, llama_like_config, llama_like_hf, rope_fraction, rope_parameters
from .mapping import Rule

_L = "model.layers.{i}."
RULES = ARCEE_RULES + [Rule.of(_L + "input_layernorm.bias", "blocks.{i}.ln1.bias"),
                       Rule.of(_L + "post_attention_layernorm.bias", "blocks.{i}.ln2.bias"),
                       Rule.of("model.norm.bias", "ln_final.bias")]


def to_config(hf: dict) -> ModelConfig:
    if hf.get("hidden_act", "relu2") != "relu2":
        raise LlmarchError(f"nemotron: hidden_act {hf['hidden_act']!r} is not supported (relu2)")
    return llama_like_config({**hf, "hidden_act": "relu2"}, norm="layernorm1p", norm_bias=True,
                             norm_eps=hf.get("norm_eps", 1e-5), rope_fraction=rope_fraction(hf, 0.5))


def from_config(cfg: ModelConfig) -> dict:
    if cfg.ffn != "relu2" or cfg.norm != "layernorm1p" or not cfg.norm_bias or cfg.norm_placement != "pre" \
            or cfg.qk_norm != "none" or cfg.sliding_window is not None or cfg.layer_types is not None:
        raise LlmarchError("model_type nemotron needs a squared-ReLU MLP, pre-norm LayerNorm1P with biases and no "
                           "QK-norm, windows or layer types")
    out = llama_like_hf(cfg.replace(ffn="swiglu"), architectures=["NemotronForCausalLM"], hidden_act="relu2",
                        norm_eps=cfg.norm_eps,
                        rope_parameters=rope_parameters(cfg, partial=True))
    out.pop("rms_norm_eps")
    return out


FAMILIES.register("nemotron")(Family(RULES, to_config, from_config, IGNORE))
