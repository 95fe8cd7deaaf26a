"""StarCoder2 (`model_type: starcoder2`; Lozhkov et al. 2024, "StarCoder 2 and The Stack v2", §6): Mistral's
attention (grouped-query, RoPE, and where `sliding_window` is set a window on every layer: each query sees itself
and the window - 1 keys before it) with biases on q, k, v and o, pre-norm LayerNorms with biases (`norm_epsilon`)
and a final one (`model.norm`), an ungated MLP `c_fc` -> act (tanh-GELU, `gelu_pytorch_tanh`) -> `c_proj`, the
linears' biases all on or all off (`use_bias`; the LayerNorms keep theirs), the head tied by default.
Its three dropouts (attention, residual, embedding) are llmarch's one `dropout` where they agree (only training
reads it); where they differ no field holds them, and they are left out (dropout 0)."""
from __future__ import annotations

from ..config import ModelConfig
from .activations import HF_NAMES, PYTORCH_TANH, exportable, hf_activation, read_activation
from .hf import FAMILIES, Family
from .llama import IGNORE, rope_fields, rope_parameters
from .mapping import Rule

_L = "model.layers.{i}."
_W = ("weight", "bias")
_LAYER = [("input_layernorm", "ln1"), ("post_attention_layernorm", "ln2"), ("self_attn.o_proj", "attn.o_proj"),
          ("mlp.c_fc", "mlp.up"), ("mlp.c_proj", "mlp.down")]

RULES = [
    Rule.of("model.embed_tokens.weight", "embed.weight"),
    *[Rule.of(tuple(_L + f"self_attn.{p}_proj.{w}" for p in "qkv"), f"blocks.{{i}}.attn.qkv_proj.{w}") for w in _W],
    *[Rule.of(_L + f"{hf}.{w}", f"blocks.{{i}}.{ours}.{w}") for hf, ours in _LAYER for w in _W],
    *[Rule.of(f"model.norm.{w}", f"ln_final.{w}") for w in _W],
    Rule.of("lm_head.weight", "lm_head.weight"),
]
_DROPOUTS = ("attention_dropout", "residual_dropout", "embedding_dropout")
# what transformers' Starcoder2ForCausalLM computes, beyond the shape fields
_NEEDS = dict(norm="layernorm", norm_bias=True, norm_placement="pre", final_norm=True, block="sequential",
              positions="rope", qk_norm="none", attn_output_gate=False, attn_sinks=False, embed_scale=False,
              embed_norm=False, head_scale=False, head_bias=False, attn_scale=None, attn_softcap=None,
              final_softcap=None, n_experts=0, mixer="attention", layer_types=None, n_decoder_layers=0,
              type_vocab_size=0, causal=True)


def _unexpressible(cfg: ModelConfig) -> str | None:
    """What of `cfg` transformers' StarCoder2 cannot compute, or None."""
    wrong = next((k for k, v in _NEEDS.items() if getattr(cfg, k) != v), None)
    if wrong:
        return f"{wrong}={_NEEDS[wrong]!r}"
    needs = [(f"an ungated ffn ({', '.join(HF_NAMES)})", exportable(cfg.ffn)),
             ("qkv_bias equal to bias (use_bias covers every linear)", cfg.qkv_bias == cfg.bias),
             ("attention 'full' or 'sliding_window'", cfg.attention in ("full", "sliding_window")),
             ("rope_scaling none, linear, dynamic, llama3 or yarn", cfg.rope_scaling != "longrope")]
    return next((need for need, ok in needs if not ok), None)


def to_config(hf: dict) -> ModelConfig:
    d, heads = hf["hidden_size"], hf["num_attention_heads"]
    rope = hf.get("rope_parameters") or {}
    dropouts = {float(hf.get(k) or 0.0) for k in _DROPOUTS}
    return ModelConfig(name=hf.get("_name_or_path") or "starcoder2", hf_model_type="starcoder2",
                       vocab_size=hf["vocab_size"], d_model=d, n_layers=hf["num_hidden_layers"], n_heads=heads,
                       n_kv_heads=hf.get("num_key_value_heads") or heads, head_dim=hf.get("head_dim") or d // heads,
                       ffn=read_activation(hf, "starcoder2", "hidden_act", "gelu_pytorch_tanh"),
                       ffn_hidden=hf["intermediate_size"], norm="layernorm",
                       norm_eps=hf.get("norm_epsilon", 1e-5), positions="rope",
                       rope_fraction=float(rope.get("partial_rotary_factor", 1.0)), bias=hf.get("use_bias", True),
                       qkv_bias=hf.get("use_bias", True), tie_embeddings=hf.get("tie_word_embeddings", True),
                       sliding_window=hf.get("sliding_window"),
                       dropout=dropouts.pop() if len(dropouts) == 1 else 0.0,
                       **{"context_length": hf.get("max_position_embeddings", 4096), **rope_fields(hf)})


def from_config(cfg: ModelConfig) -> dict:
    rope = rope_parameters(cfg)
    if cfg.rope_fraction != 1.0:
        rope["partial_rotary_factor"] = cfg.rope_fraction
    return dict(model_type="starcoder2", architectures=["Starcoder2ForCausalLM"], vocab_size=cfg.vocab_size,
                hidden_size=cfg.d_model, intermediate_size=cfg.ffn_hidden, num_hidden_layers=cfg.n_layers,
                num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads, head_dim=cfg.head_dim,
                hidden_act=hf_activation(cfg.ffn, PYTORCH_TANH), norm_epsilon=cfg.norm_eps, use_bias=cfg.bias,
                max_position_embeddings=(cfg.rope_original_context if cfg.rope_scaling == "dynamic"
                                         else cfg.context_length),
                rope_parameters=rope, sliding_window=cfg.sliding_window, tie_word_embeddings=cfg.tie_embeddings,
                **{k: cfg.dropout for k in _DROPOUTS})


FAMILIES.register("starcoder2")(Family(RULES, to_config, from_config, IGNORE, needs=_unexpressible))
