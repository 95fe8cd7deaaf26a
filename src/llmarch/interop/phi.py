"""Phi-1, Phi-1.5 and Phi-2 (`model_type: phi`; Gunasekar et al. 2023, "Textbooks Are All You Need"; Li et al.
2023, "Textbooks Are All You Need II"): GPT-J's parallel block with one LayerNorm (with biases) feeding both
branches, x + attn(ln(x)) + mlp(ln(x)) (our block="parallel", shared_norm), biases on every linear, q, k, v as
separate projections (fused into our qkv_proj) and `dense` as the output projection, RoPE on the first
`partial_rotary_factor` of each head's dims in the half-split layout (Phi-2: 0.4; transformers' default 0.5), a
tanh-GELU MLP (`fc1`, `fc2`; hidden_act gelu_new), a `final_layernorm`, and an untied `lm_head` with a bias
(head_bias). `qk_layernorm` (transformers' PhiAttention) is a LayerNorm with bias over each head's queries and
keys before RoPE: our qk_norm="head" with the model's LayerNorm (layers/attention.py)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .activations import HF_NAMES, exportable, hf_activation, read_activation
from .hf import FAMILIES, Family
from .llama import rope_fields, rope_fraction, rope_parameters
from .mapping import Rule

_L = "model.layers.{i}."
_ATTN = _L + "self_attn."
_LAYER = [("self_attn.dense", "attn.o_proj"), ("mlp.fc1", "mlp.up"), ("mlp.fc2", "mlp.down"),
          ("input_layernorm", "ln1"), ("self_attn.q_layernorm", "attn.q_norm"),
          ("self_attn.k_layernorm", "attn.k_norm")]

RULES = [
    Rule.of("model.embed_tokens.weight", "embed.weight"),
    *[Rule.of(tuple(_ATTN + f"{p}_proj.{w}" for p in "qkv"), f"blocks.{{i}}.attn.qkv_proj.{w}")
      for w in ("weight", "bias")],
    *[Rule.of(_L + f"{hf}.{w}", f"blocks.{{i}}.{ours}.{w}") for hf, ours in _LAYER for w in ("weight", "bias")],
    Rule.of("model.final_layernorm.weight", "ln_final.weight"),
    Rule.of("model.final_layernorm.bias", "ln_final.bias"),
    Rule.of("lm_head.weight", "lm_head.weight"),
    Rule.of("lm_head.bias", "lm_head.bias"),
]
IGNORE = (r"rotary_emb\.inv_freq$",)


def _unexpressible(cfg: ModelConfig) -> str | None:
    """What of `cfg` transformers' Phi cannot compute, or None."""
    needs = [("norm='layernorm' with norm_bias", cfg.norm == "layernorm" and cfg.norm_bias),
             ("pre-norm blocks and a final norm", cfg.norm_placement == "pre" and cfg.final_norm),
             ("block='parallel' with shared_norm", cfg.block == "parallel" and cfg.shared_norm),
             ("positions='rope'", cfg.positions == "rope"),
             ("head_dim = d_model / n_heads", cfg.head_dim * cfg.n_heads == cfg.d_model),
             ("bias, qkv_bias and head_bias", cfg.bias and cfg.qkv_bias and cfg.head_bias),
             (f"an ungated ffn ({', '.join(HF_NAMES)})", exportable(cfg.ffn)),
             ("qk_norm 'none' or 'head'", cfg.qk_norm in ("none", "head")),
             ("no sliding_window, layer types or experts",
              cfg.sliding_window is None and cfg.layer_types is None and not cfg.n_experts),
             ("no embed_scale, head_scale, softcaps or attn_scale",
              not (cfg.embed_scale or cfg.head_scale or cfg.attn_softcap or cfg.final_softcap)
              and cfg.attn_scale is None),
             ("mixer='attention' with full attention", cfg.mixer == "attention" and cfg.attention == "full")]
    return next((need for need, ok in needs if not ok), None)


def to_config(hf: dict) -> ModelConfig:
    d, heads = hf["hidden_size"], hf["num_attention_heads"]
    if hf.get("head_dim") not in (None, d // heads):  # qk_layernorm's width is d / heads whatever head_dim says
        raise LlmarchError(f"phi: head_dim={hf['head_dim']} is not hidden_size / num_attention_heads = {d // heads}")
    fields = dict(name=hf.get("_name_or_path") or "phi", hf_model_type="phi", vocab_size=hf["vocab_size"],
                  d_model=d, n_layers=hf["num_hidden_layers"], n_heads=heads,
                  n_kv_heads=hf.get("num_key_value_heads") or heads,
                  ffn=read_activation(hf, "phi", "hidden_act", "gelu_new"),
                  ffn_hidden=hf["intermediate_size"], norm="layernorm", norm_eps=hf.get("layer_norm_eps", 1e-5),
                  block="parallel", shared_norm=True, positions="rope",
                  # transformers' PhiConfig: 0.5 where a config gives none (its older checkpoints)
                  rope_fraction=rope_fraction(hf, 0.5),
                  qk_norm="head" if hf.get("qk_layernorm") else "none", bias=True, head_bias=True,
                  tie_embeddings=hf.get("tie_word_embeddings", False),
                  context_length=hf.get("max_position_embeddings", 2048))
    fields.update(rope_fields(hf))  # a dynamic scaling stretches context_length
    return ModelConfig(**fields)


def from_config(cfg: ModelConfig) -> dict:
    return dict(model_type="phi", architectures=["PhiForCausalLM"], vocab_size=cfg.vocab_size,
                hidden_size=cfg.d_model, intermediate_size=cfg.ffn_hidden, num_hidden_layers=cfg.n_layers,
                num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads,
                hidden_act=hf_activation(cfg.ffn), layer_norm_eps=cfg.norm_eps,
                rope_parameters=rope_parameters(cfg, partial=True),
                max_position_embeddings=(cfg.rope_original_context if cfg.rope_scaling == "dynamic"
                                         else cfg.context_length),
                qk_layernorm=cfg.qk_norm == "head", tie_word_embeddings=cfg.tie_embeddings)


FAMILIES.register("phi")(Family(RULES, to_config, from_config, IGNORE, needs=_unexpressible))
