"""What a family's config.json can hold: a model is exported only if its config, written by the family's
from_config and read back by its to_config, comes back the same on the fields that change the computation (and
each layer's LAYER_FIELDS), so to_hf never writes a checkpoint that transformers would compute differently."""
from __future__ import annotations

from typing import Callable

from ..config import LAYER_FIELDS, ModelConfig
from ..errors import LlmarchError

# the fields the classic decoders' families (openai-gpt, xglm, biogpt, ctrl, gpt_neox_japanese) fix or read
COMPUTED = ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "ffn", "ffn_hidden", "norm",
            "norm_eps", "final_norm_eps", "norm_placement", "final_norm", "block", "shared_norm", "positions",
            "position_offset", "rope_theta", "rope_fraction", "rope_scaling", "embed_scale", "embed_norm", "bias",
            "qkv_bias", "o_bias", "ffn_in_bias", "norm_bias", "tie_embeddings", "head_bias", "head", "causal",
            "mixer", "attention", "attn_scale", "qk_norm", "n_experts", "type_vocab_size", "layer_types",
            "layer_overrides", "embed_dim", "head_transform", "logit_divisor", "embed_multiplier",
            "residual_multiplier", "sliding_window", "sub_norm", "parallel_mixers", "attn_period", "codebooks",
            "qk_norm_bias", "qk_norm_kind", "qk_norm_eps", "suppressed_logits")


def refuse_unless_read_back(cfg: ModelConfig, hf: dict, to_config: Callable[[dict], ModelConfig]) -> dict:
    """hf (what from_config wrote for cfg), once to_config reads it back to the same computation; else a one-line
    LlmarchError naming the first field the family's config.json cannot hold."""
    back = to_config(hf)
    for name in COMPUTED:
        if getattr(cfg, name) != getattr(back, name):
            raise LlmarchError(f"model_type {hf['model_type']} cannot express {name}={getattr(cfg, name)!r} "
                               f"(it would load as {getattr(back, name)!r})")
    for i in range(cfg.n_layers):
        for name in LAYER_FIELDS:
            if getattr(cfg.for_layer(i), name) != getattr(back.for_layer(i), name):
                raise LlmarchError(f"model_type {hf['model_type']} cannot express layer {i}'s {name}="
                                   f"{getattr(cfg.for_layer(i), name)!r}")
    return hf
