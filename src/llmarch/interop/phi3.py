"""Phi-3 (`model_type: phi3`; Abdin et al. 2024, "Phi-3 Technical Report"): LLaMA's block with q, k, v fused
in `qkv_proj` (rows q, then k, then v: our qkv_proj as it is) and gate, up fused in `gate_up_proj` (rows gate,
then up: our gate_up), no biases, an optional sliding window on every layer, and for the long-context models
LongRoPE (`rope_type` longrope, or its older names su and yarn, which transformers reads as longrope):
per-frequency short and long factors and an attention factor on cos and sin (layers/positions.py)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, llama_like_config, llama_like_hf, rope_parameters
from .mapping import Rule

_L = "model.layers.{i}."
RULES = [
    Rule.of("model.embed_tokens.weight", "embed.weight"),
    Rule.of(_L + "self_attn.qkv_proj.weight", "blocks.{i}.attn.qkv_proj.weight"),
    Rule.of(_L + "self_attn.o_proj.weight", "blocks.{i}.attn.o_proj.weight"),
    Rule.of(_L + "mlp.gate_up_proj.weight", "blocks.{i}.mlp.gate_up.weight"),
    Rule.of(_L + "mlp.down_proj.weight", "blocks.{i}.mlp.down.weight"),
    Rule.of(_L + "input_layernorm.weight", "blocks.{i}.ln1.weight"),
    Rule.of(_L + "post_attention_layernorm.weight", "blocks.{i}.ln2.weight"),
    Rule.of("model.norm.weight", "ln_final.weight"),
    Rule.of("lm_head.weight", "lm_head.weight"),
]
_LONGROPE = ("longrope", "su", "yarn")  # transformers' Phi3Config reads su and yarn as longrope


def _rope(hf: dict) -> tuple[dict, dict]:
    """(the config without its LongRoPE, our LongRoPE fields) from `rope_parameters` or `rope_scaling`."""
    params = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    kind = params.get("rope_type", params.get("type", "default"))
    fraction = float(params.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0)))
    theta = params.get("rope_theta", hf.get("rope_theta", 10000.0))
    plain = {**hf, "rope_scaling": None, "rope_parameters": {"rope_type": "default", "rope_theta": theta}}
    if kind not in _LONGROPE:
        if kind != "default":
            raise LlmarchError(f"phi3: rope type {kind!r} is not supported; supported: default, longrope")
        return plain, {"rope_fraction": fraction}
    max_pos = hf.get("max_position_embeddings", 4096)
    original = params.get("original_max_position_embeddings") or hf.get("original_max_position_embeddings", 4096)
    return plain, dict(rope_fraction=fraction, rope_scaling="longrope", rope_original_context=int(original),
                       rope_factor=float(params.get("factor") or max_pos / original),
                       rope_short_factor=[float(f) for f in params["short_factor"]],
                       rope_long_factor=[float(f) for f in params["long_factor"]],
                       rope_attn_factor=params.get("attention_factor"))


def to_config(hf: dict) -> ModelConfig:
    plain, rope = _rope(hf)
    return llama_like_config({**plain, "attention_bias": False, "mlp_bias": False},
                             sliding_window=hf.get("sliding_window"), **rope)


def from_config(cfg: ModelConfig) -> dict:
    if cfg.bias or cfg.qkv_bias or cfg.qk_norm != "none" or cfg.layer_types is not None:
        raise LlmarchError("model_type phi3 has no biases, QK-norm or layer types")
    # pad_token_id: transformers' default, 32000, lies past a smaller vocabulary
    out = llama_like_hf(cfg, architectures=["Phi3ForCausalLM"], rope_parameters=rope_params(cfg),
                        sliding_window=cfg.sliding_window, pad_token_id=None,
                        original_max_position_embeddings=cfg.rope_original_context or cfg.context_length)
    for key in ("attention_bias", "mlp_bias"):
        out.pop(key)
    return out


def rope_params(cfg: ModelConfig) -> dict:
    """_rope inverted: rope_parameters, LongRoPE's factors among them (Phi-3, Phi-3.5-MoE)."""
    params = rope_parameters(cfg.replace(rope_scaling="none", rope_short_factor=None, rope_long_factor=None,
                                         rope_attn_factor=None))
    params["partial_rotary_factor"] = cfg.rope_fraction
    if cfg.rope_scaling == "longrope":
        params.update(rope_type="longrope", short_factor=list(cfg.rope_short_factor),
                      long_factor=list(cfg.rope_long_factor), factor=cfg.rope_factor,
                      original_max_position_embeddings=cfg.rope_original_context)
        if cfg.rope_attn_factor is not None:
            params["attention_factor"] = cfg.rope_attn_factor
    elif cfg.rope_scaling != "none":
        raise LlmarchError(f"model_type {cfg.hf_model_type} takes rope_scaling none or longrope, not "
                           f"{cfg.rope_scaling!r}")
    return params


FAMILIES.register("phi3")(Family(RULES, to_config, from_config, IGNORE))
