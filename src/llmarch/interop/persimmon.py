"""Persimmon (`model_type: persimmon`; Persimmon-8B base and chat, Adept 2023; Fuyu's language model): GPT-NeoX's
fused per-head q, k, v (`query_key_value`, layout `neox_qkv`) and biases everywhere, in a sequential pre-norm block
of LayerNorms with biases; a LayerNorm with bias over each head's queries and keys, shared by the heads
(`q_layernorm`, `k_layernorm`: our qk_norm "head", before RoPE), RoPE on the first `partial_rotary_factor` of each
head's dims (default 0.5; halves), an ungated squared-ReLU MLP (`dense_h_to_4h`, `dense_4h_to_h`: So et al. 2021,
"Primer"), a final LayerNorm (`final_layernorm`) and an untied head without bias. `hidden_dropout` and
`attention_dropout` are llmarch's one `dropout` where they agree (training only reads it).

`fuyu` checkpoints (FuyuForCausalLM; Adept 2023, Fuyu-8B) read as their Persimmon language model: the config is
text_config, the weights under model.language_model.* (transformers 5) or language_model.model.* (as published).
Fuyu's image path, a linear patch embedding (`vision_embed_tokens`) whose outputs replace the embeddings of the
image-placeholder tokens, is not read (llmarch takes token ids, not input embeddings); text-only, Fuyu is Persimmon.
Written back as persimmon."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from ..layers.ffn import ACTIVATIONS
from . import multimodal
from .hf import FAMILIES, Family
from .llama import IGNORE, rope_fields, rope_fraction, rope_parameters
from .mapping import Rule

_L = "model.layers.{i}."
_W = ("weight", "bias")
_LAYER = [("input_layernorm", "ln1", "same"), ("post_attention_layernorm", "ln2", "same"),
          ("self_attn.query_key_value", "attn.qkv_proj", "neox_qkv"), ("self_attn.dense", "attn.o_proj", "same"),
          ("self_attn.q_layernorm", "attn.q_norm", "same"), ("self_attn.k_layernorm", "attn.k_norm", "same"),
          ("mlp.dense_h_to_4h", "mlp.up", "same"), ("mlp.dense_4h_to_h", "mlp.down", "same")]
RULES = [
    Rule.of("model.embed_tokens.weight", "embed.weight"),
    *[Rule.of(_L + f"{hf}.{w}", f"blocks.{{i}}.{ours}.{w}", layout) for hf, ours, layout in _LAYER for w in _W],
    *[Rule.of(f"model.final_layernorm.{w}", f"ln_final.{w}") for w in _W],
    Rule.of("lm_head.weight", "lm_head.weight"),
]
_DROPOUTS = ("hidden_dropout", "attention_dropout")


def to_config(hf: dict) -> ModelConfig:
    act = hf.get("hidden_act", "relu2")
    if act not in ACTIVATIONS:
        raise LlmarchError(f"persimmon: hidden_act {act!r} is not supported ({', '.join(ACTIVATIONS)})")
    d, heads = hf["hidden_size"], hf["num_attention_heads"]
    if d % heads:
        raise LlmarchError(f"persimmon: hidden_size {d} is not a multiple of num_attention_heads {heads}")
    dropouts = {float(hf.get(k) or 0.0) for k in _DROPOUTS}
    return ModelConfig(name=hf.get("_name_or_path") or "persimmon", hf_model_type="persimmon",
                       vocab_size=hf["vocab_size"], d_model=d, n_layers=hf["num_hidden_layers"], n_heads=heads,
                       ffn=act, ffn_hidden=hf["intermediate_size"], norm="layernorm",
                       norm_eps=hf.get("layer_norm_eps", 1e-5), positions="rope", rope_fraction=rope_fraction(hf, 0.5),
                       bias=True, qk_norm="head" if hf.get("qk_layernorm", True) else "none",
                       tie_embeddings=hf.get("tie_word_embeddings", False),
                       dropout=dropouts.pop() if len(dropouts) == 1 else 0.0,
                       **{"context_length": hf.get("max_position_embeddings", 16384), **rope_fields(hf)})


def _unexpressible(cfg: ModelConfig) -> str | None:
    needs = dict(norm="layernorm", norm_bias=True, norm_placement="pre", block="sequential", bias=True, qkv_bias=True,
                 o_bias=True, positions="rope", head_bias=False, n_experts=0, mixer="attention", attn_period=0,
                 sliding_window=None, layer_types=None, attn_scale=None, embed_scale=False, final_softcap=None)
    wrong = next((k for k, v in needs.items() if getattr(cfg, k) != v), None)
    if wrong:
        return f"{wrong}={needs[wrong]!r}"
    if cfg.ffn not in ACTIVATIONS or cfg.qk_norm not in ("none", "head") or cfg.n_kv_heads != cfg.n_heads \
            or cfg.head_dim * cfg.n_heads != cfg.d_model:
        return "an ungated MLP, qk_norm 'none' or 'head', and as many key/value heads as heads of d_model / n_heads"
    return None


def from_config(cfg: ModelConfig) -> dict:
    return dict(model_type="persimmon", architectures=["PersimmonForCausalLM"], vocab_size=cfg.vocab_size,
                hidden_size=cfg.d_model, intermediate_size=cfg.ffn_hidden, num_hidden_layers=cfg.n_layers,
                num_attention_heads=cfg.n_heads, hidden_act=cfg.ffn, layer_norm_eps=cfg.norm_eps,
                qk_layernorm=cfg.qk_norm == "head", rope_parameters=rope_parameters(cfg, partial=True),
                max_position_embeddings=(cfg.rope_original_context if cfg.rope_scaling == "dynamic"
                                         else cfg.context_length),
                tie_word_embeddings=cfg.tie_embeddings, **{k: cfg.dropout for k in _DROPOUTS})


FAMILIES.register("persimmon")(Family(RULES, to_config, from_config, IGNORE, needs=_unexpressible))


def fuyu_config(hf: dict) -> ModelConfig:
    """The multimodal `fuyu` (FuyuForCausalLM): its text_config, read as persimmon."""
    text = {"model_type": "persimmon", **(hf.get("text_config") or {})}
    if text["model_type"] != "persimmon":
        raise LlmarchError(f"fuyu with a {text['model_type']!r} text model is not supported (persimmon)")
    return to_config({**text, "_name_or_path": hf.get("_name_or_path")})


multimodal.register("fuyu", FAMILIES["persimmon"], fuyu_config, "persimmon", (r"^(model\.)?vision_embed_tokens\.",))
