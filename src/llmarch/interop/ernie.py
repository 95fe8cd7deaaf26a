"""ERNIE 4.5 dense models (`model_type: ernie4_5`: ERNIE-4.5-0.3B; Baidu 2025, "ERNIE 4.5 Technical Report"):
LLaMA's layout with RoPE turning adjacent dims (2j, 2j + 1) together, as GLM does (their q and k rows reordered
to our halves: mapping layout "rope_pairs"), `use_bias` on q, k, v, o and the MLP alike, and a tied head by
default."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf
from .mapping import ROPE_PAIRS_QKV, Rule

RULES = [Rule.of(r.hf, r.ours, ROPE_PAIRS_QKV) if ".qkv_proj." in r.ours else r for r in LLAMA_RULES]


def to_config(hf: dict) -> ModelConfig:
    bias = bool(hf.get("use_bias", False))
    return llama_like_config({**hf, "attention_bias": bias, "mlp_bias": bias, "head_dim": hf.get("head_dim", 128),
                              "tie_word_embeddings": hf.get("tie_word_embeddings", True)},
                             norm_eps=hf.get("rms_norm_eps", 1e-5))


def from_config(cfg: ModelConfig) -> dict:
    if cfg.norm != "rmsnorm" or cfg.norm_placement != "pre" or not cfg.final_norm or cfg.bias != cfg.qkv_bias:
        raise LlmarchError("model_type ernie4_5 needs pre-norm RMSNorm and one use_bias for q, k, v, o and the MLP")
    if cfg.ffn != "swiglu" or cfg.qk_norm != "none" or cfg.sliding_window is not None or cfg.layer_types is not None:
        raise LlmarchError("model_type ernie4_5 has a SwiGLU MLP, no QK-norm, windows or layer types")
    out = llama_like_hf(cfg, architectures=["Ernie4_5ForCausalLM"], use_bias=cfg.bias)
    for key in ("attention_bias", "mlp_bias"):
        out.pop(key)
    return out


FAMILIES.register("ernie4_5")(Family(RULES, to_config, from_config, IGNORE))
