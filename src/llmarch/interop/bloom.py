"""BLOOM (`model_type: bloom`; BigScience 2022, "BLOOM: A 176B-Parameter Open-Access Multilingual Language
Model", §3.2): ALiBi instead of position embeddings, a LayerNorm over the word embeddings, pre-norm LayerNorms
with biases, q, k, v fused per head in `query_key_value` (rows [h0: q k v, h1: q k v, ...], layout
`neox_qkv`), a tanh-GELU MLP of 4 x width with biases, and the head tied to the word embeddings.
`apply_residual_connection_post_layernorm` (the residual taken after the norm) is not supported."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .mapping import Rule

_L = "transformer.h.{i}."
_W = ("weight", "bias")
_LAYER = [("input_layernorm", "ln1", "same"), ("self_attention.query_key_value", "attn.qkv_proj", "neox_qkv"),
          ("self_attention.dense", "attn.o_proj", "same"), ("post_attention_layernorm", "ln2", "same"),
          ("mlp.dense_h_to_4h", "mlp.up", "same"), ("mlp.dense_4h_to_h", "mlp.down", "same")]

RULES = [
    Rule.of("transformer.word_embeddings.weight", "embed.weight"),
    *[Rule.of(f"transformer.word_embeddings_layernorm.{w}", f"embed_norm.{w}") for w in _W],
    *[Rule.of(_L + f"{hf}.{w}", f"blocks.{{i}}.{ours}.{w}", layout) for hf, ours, layout in _LAYER for w in _W],
    *[Rule.of(f"transformer.ln_f.{w}", f"ln_final.{w}") for w in _W],
    Rule.of("lm_head.weight", "lm_head.weight"),
]
# what transformers' BloomForCausalLM computes, beyond the shape fields
_NEEDS = dict(positions="alibi", alibi_scale=1.0, alibi_bf16=False, embed_norm=True, norm="layernorm",
              norm_bias=True, norm_placement="pre", final_norm=True, ffn="gelu_tanh", bias=True, qkv_bias=True,
              block="sequential", n_decoder_layers=0, sliding_window=None, qk_norm="none", embed_scale=False,
              head_scale=False, layer_types=None)


def to_config(hf: dict) -> ModelConfig:
    if hf.get("apply_residual_connection_post_layernorm", False):
        raise LlmarchError("bloom: apply_residual_connection_post_layernorm=true is not supported")
    d = hf.get("n_embed") or hf.get("hidden_size", 64)
    return ModelConfig(name=hf.get("_name_or_path") or "bloom", hf_model_type="bloom", vocab_size=hf["vocab_size"],
                       d_model=d, n_layers=hf.get("n_layer", hf.get("num_hidden_layers", 2)),
                       n_heads=hf.get("n_head", hf.get("num_attention_heads", 8)), ffn_hidden=4 * d,
                       norm_eps=hf.get("layer_norm_epsilon", 1e-5),
                       tie_embeddings=hf.get("tie_word_embeddings", True),
                       context_length=hf.get("seq_length", 2048), **_NEEDS)


def from_config(cfg: ModelConfig) -> dict:
    wrong = next((k for k, v in _NEEDS.items() if getattr(cfg, k) != v), None)
    if wrong or cfg.ffn_hidden != 4 * cfg.d_model or cfg.n_kv_heads != cfg.n_heads \
            or cfg.n_heads * cfg.head_dim != cfg.d_model:
        what = (f"{wrong}={_NEEDS[wrong]!r}" if wrong
                else "ffn_hidden = 4 * d_model, n_kv_heads = n_heads and head_dim = d_model / n_heads")
        raise LlmarchError(f"model_type bloom needs {what}")
    return dict(model_type="bloom", architectures=["BloomForCausalLM"], vocab_size=cfg.vocab_size,
                hidden_size=cfg.d_model, n_layer=cfg.n_layers, n_head=cfg.n_heads,
                layer_norm_epsilon=cfg.norm_eps, apply_residual_connection_post_layernorm=False,
                tie_word_embeddings=cfg.tie_embeddings, seq_length=cfg.context_length)


def canonical(name: str) -> str:
    """The original hub files (BloomModel's state) store `h.0...` without the `transformer.` prefix."""
    return name if name.startswith(("transformer.", "lm_head.")) else "transformer." + name


FAMILIES.register("bloom")(Family(RULES, to_config, from_config, canonical=canonical))
