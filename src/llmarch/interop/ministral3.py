"""Ministral 3 (`model_type: ministral3`; Mistral AI 2025, Ministral 3 3B/8B/14B, also the text model of their
`mistral3` vision-language checkpoints): Mistral's layout (LLaMA's weights, an optional sliding window) with YaRN
RoPE and Llama 4's log-length query scaling on every layer: queries at position p times
1 + llama_4_scaling_beta * ln(1 + floor(p / original_max_position_embeddings)) (attn_temp_scale, attn_temp_floor,
attn_temp_shift 0). llmarch counts p within each row, as for Llama 4; transformers counts the cache slot, so its
left-padded rows differ from the same rows alone past original_max_position_embeddings tokens."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES, llama_like_hf, rope_parameters
from .mistral import to_config as mistral_config


def query_scaling(hf: dict, params: dict) -> dict:
    """The config fields of rope_parameters' llama_4_scaling_beta (Ministral 3, Mistral 4): its unit YaRN's
    original_max_position_embeddings; none without it."""
    beta = params.get("llama_4_scaling_beta")
    if not beta:
        return {}
    unit = params.get("original_max_position_embeddings")
    if not unit:
        raise LlmarchError(f"{hf['model_type']}: llama_4_scaling_beta needs original_max_position_embeddings in "
                           "rope_parameters")
    return dict(attn_temp_scale=float(beta), attn_temp_floor=int(unit), attn_temp_shift=0)


def query_scaling_hf(cfg: ModelConfig, params: dict) -> None:
    """query_scaling inverted, into `params` (rope_parameters), or one line where the form cannot hold it."""
    if not cfg.attn_temp_scale:
        return
    if cfg.attn_temp_shift != 0:
        raise LlmarchError(f"model_type {cfg.hf_model_type} scales queries by 1 + beta ln(1 + floor(p / unit)) "
                           "(attn_temp_shift 0)")
    if cfg.attn_temp_floor != params.get("original_max_position_embeddings"):
        raise LlmarchError(f"model_type {cfg.hf_model_type} takes the query scaling's unit from YaRN's "
                           f"original_max_position_embeddings, not attn_temp_floor {cfg.attn_temp_floor}")
    params["llama_4_scaling_beta"] = cfg.attn_temp_scale


def to_config(hf: dict) -> ModelConfig:
    fields = query_scaling(hf, hf.get("rope_parameters") or {})
    return mistral_config(hf).replace(hf_model_type="ministral3", **fields)


def from_config(cfg: ModelConfig) -> dict:
    if cfg.layer_types is not None:
        raise LlmarchError("model_type ministral3 scales queries alike on every layer, with no layer types")
    params = rope_parameters(cfg)
    query_scaling_hf(cfg, params)
    out = llama_like_hf(cfg, architectures=["Ministral3ForCausalLM"], sliding_window=cfg.sliding_window,
                        rope_parameters=params)
    for key in ("attention_bias", "mlp_bias"):
        out.pop(key)
    return out


FAMILIES.register("ministral3")(Family(RULES, to_config, from_config, IGNORE))
