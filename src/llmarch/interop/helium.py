"""Helium (`model_type: helium`: Kyutai's Helium-1; Kyutai 2025): LLaMA's layout with RoPE turning adjacent dims
(2j, 2j + 1), as GLM does (q and k rows reordered to our halves: layout "rope_pairs"), and an output projection of
hidden_size x hidden_size (so heads x head_dim must be the width)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf
from .mapping import with_rope_pairs

RULES = with_rope_pairs(LLAMA_RULES)


def to_config(hf: dict) -> ModelConfig:
    if hf.get("mlp_bias", False):  # ours: o's bias is the MLP's, and Helium's o has none
        raise LlmarchError("helium: mlp_bias=true is not supported")
    cfg = llama_like_config({**hf, "attention_bias": False}, qkv_bias=bool(hf.get("attention_bias", False)),
                            norm_eps=hf.get("rms_norm_eps", 1e-8))
    if cfg.n_heads * cfg.head_dim != cfg.d_model:
        raise LlmarchError("helium: heads x head_dim must equal hidden_size (its o_proj is hidden x hidden)")
    return cfg


def from_config(cfg: ModelConfig) -> dict:
    if cfg.n_heads * cfg.head_dim != cfg.d_model or cfg.bias or cfg.norm != "rmsnorm" or cfg.qk_norm != "none" \
            or cfg.ffn != "swiglu" or cfg.sliding_window is not None or cfg.layer_types is not None:
        raise LlmarchError("model_type helium needs heads x head_dim = d_model, no o or MLP biases, RMSNorm, "
                           "SwiGLU and no QK-norm, windows or layer types")
    return llama_like_hf(cfg, architectures=["HeliumForCausalLM"])


FAMILIES.register("helium")(Family(RULES, to_config, from_config, IGNORE))
