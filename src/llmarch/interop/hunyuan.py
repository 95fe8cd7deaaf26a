"""Hunyuan dense (`model_type: hunyuan_v1_dense`: Hunyuan-0.5B to 7B; Tencent 2025): LLaMA's layout with a
per-head RMSNorm on queries and keys after RoPE rather than before it (qk_norm 'head_after_rope':
`query_layernorm`, `key_layernorm`). Its RoPE type "dynamic" with an `alpha` is not dynamic NTK: a fixed alpha
only stretches the base, theta * alpha ** (d / (d - 2)) (transformers' ntk_alpha), which llmarch reads as that
base and writes back as plain RoPE."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf
from .mapping import Rule

_A = "model.layers.{i}.self_attn."
RULES = LLAMA_RULES + [Rule.of(_A + "query_layernorm.weight", "blocks.{i}.attn.q_norm.weight"),
                       Rule.of(_A + "key_layernorm.weight", "blocks.{i}.attn.k_norm.weight")]


def _rope(hf: dict) -> dict:
    """rope_parameters with a fixed alpha folded into the base."""
    params = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    alpha = params.get("alpha")
    if alpha is None:
        return hf
    d = hf.get("head_dim") or hf["hidden_size"] // hf["num_attention_heads"]
    theta = params.get("rope_theta", hf.get("rope_theta", 10000.0)) * float(alpha) ** (d / (d - 2))
    rest = {k: v for k, v in hf.items() if k not in ("rope_parameters", "rope_scaling", "rope_theta")}
    return {**rest, "rope_parameters": {"rope_type": "default", "rope_theta": theta}}


def to_config(hf: dict) -> ModelConfig:
    return llama_like_config(_rope(hf), qk_norm="head_after_rope", norm_eps=hf.get("rms_norm_eps", 1e-5))


def from_config(cfg: ModelConfig) -> dict:
    if cfg.qk_norm != "head_after_rope" or cfg.norm != "rmsnorm" or cfg.norm_placement != "pre" \
            or cfg.sliding_window is not None or cfg.layer_types is not None:
        raise LlmarchError("model_type hunyuan_v1_dense needs qk_norm='head_after_rope', pre-norm RMSNorm and no "
                           "windows or layer types")
    return llama_like_hf(cfg, architectures=["HunYuanDenseV1ForCausalLM"])


FAMILIES.register("hunyuan_v1_dense")(Family(RULES, to_config, from_config, IGNORE))
