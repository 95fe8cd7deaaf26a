"""OLMo 1 (`model_type: olmo`; Groeneveld et al. 2024, "OLMo: Accelerating the Science of Language Models", §2.1):
LLaMA's layout without a single norm parameter: every norm a LayerNorm without gain or bias, in fp32 (norm
'layernorm_plain'), and q, k, v optionally clamped to +-clip_qkv after their projections (OLMo 1.7's 8.0). No
norm tensors are stored. OLMoE (`olmoe`) is olmoe.py."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf

RULES = [r for r in LLAMA_RULES if "norm" not in r.hf[0]]


def clip_field(hf: dict) -> dict:
    clip = hf.get("clip_qkv")
    return {} if clip is None else {"clip_qkv": float(clip)}


def to_config(hf: dict) -> ModelConfig:
    if hf.get("attention_bias", False):  # biased q, k, v, o with an unbiased MLP: llmarch ties o's bias to the MLP's
        raise LlmarchError("olmo: attention_bias=true is not supported")
    return llama_like_config({**hf, "mlp_bias": False}, norm="layernorm_plain", norm_eps=1e-5, **clip_field(hf))


def from_config(cfg: ModelConfig) -> dict:
    if cfg.norm != "layernorm_plain" or cfg.norm_eps != 1e-5 or cfg.norm_placement != "pre" or not cfg.final_norm:
        raise LlmarchError("model_type olmo needs norm='layernorm_plain' (eps 1e-5), pre-norm and a final norm")
    if (cfg.sliding_window is not None or cfg.layer_types is not None or cfg.bias or cfg.qkv_bias
            or cfg.qk_norm != "none"):
        raise LlmarchError("model_type olmo has no biases, sliding windows, layer types or QK-norm")
    out = llama_like_hf(cfg, architectures=["OlmoForCausalLM"], clip_qkv=cfg.clip_qkv)
    for key in ("mlp_bias", "head_dim", "rms_norm_eps"):  # OLMo has none of these
        out.pop(key)
    return out


FAMILIES.register("olmo")(Family(RULES, to_config, from_config, IGNORE))
