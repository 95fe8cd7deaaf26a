"""GPT-Neo (`model_type: gpt_neo`; EleutherAI 2021, GPT-Neo 125M/1.3B/2.7B): GPT-2's layout (learned positions,
pre-norm LayerNorm, tanh-GELU MLP, tied head) as nn.Linear layers, q, k and v apart and without biases (the output
projection has one), attention scores NOT scaled by 1/sqrt(head_dim) (attn_scale 1.0, as Mesh TensorFlow's
implementation trained them), and layers of two types, `attention_types` expanded: global (full causal) and
local (causal over the last window_size keys, the query's own included)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from ..presets import PRESETS
from .activations import read_activation, require_hf_activation
from .hf import FAMILIES, Family
from .mapping import Rule

_L = "transformer.h.{i}."
RULES = [
    Rule.of("transformer.wte.weight", "embed.weight"),
    Rule.of("transformer.wpe.weight", "positions.weight"),
    Rule.of(tuple(_L + f"attn.attention.{p}_proj.weight" for p in "qkv"), "blocks.{i}.attn.qkv_proj.weight"),
    *[Rule.of(_L + f"{hf}.{w}", f"blocks.{{i}}.{ours}.{w}") for hf, ours in (
        ("attn.attention.out_proj", "attn.o_proj"), ("ln_1", "ln1"), ("ln_2", "ln2"), ("mlp.c_fc", "mlp.up"),
        ("mlp.c_proj", "mlp.down")) for w in ("weight", "bias")],
    Rule.of("transformer.ln_f.weight", "ln_final.weight"),
    Rule.of("transformer.ln_f.bias", "ln_final.bias"),
    Rule.of("lm_head.weight", "lm_head.weight"),
]
GLOBAL, LOCAL = "global", "local"


def layer_types(hf: dict) -> list[str]:
    """attention_types, [[["global", "local"], 12]], expanded: each pattern repeated its count of times."""
    types = [t for pattern, count in hf.get("attention_types") or [[[GLOBAL, LOCAL], 12]] for _ in range(count)
             for t in pattern]
    if len(types) != hf["num_layers"] or set(types) - {GLOBAL, LOCAL}:
        raise LlmarchError(f"gpt_neo: attention_types {hf.get('attention_types')} do not give {hf['num_layers']} "
                           "global or local layers")
    return types


def to_config(hf: dict) -> ModelConfig:
    d = hf["hidden_size"]
    types = layer_types(hf)
    return ModelConfig(**{
        **PRESETS["gpt2"], "name": hf.get("_name_or_path") or "gpt_neo", "hf_model_type": "gpt_neo",
        "vocab_size": hf["vocab_size"], "d_model": d, "n_layers": hf["num_layers"], "n_heads": hf["num_heads"],
        "ffn_hidden": hf.get("intermediate_size") or 4 * d, "context_length": hf.get("max_position_embeddings", 2048),
        "norm_eps": hf.get("layer_norm_epsilon", 1e-5),
        "ffn": read_activation(hf, "gpt_neo", "activation_function", "gelu_new"), "qkv_bias": False,
        "attn_scale": 1.0, "tie_embeddings": hf.get("tie_word_embeddings", True), "layer_types": types,
        "type_ids_from_tokens": True,
        "layer_overrides": {LOCAL: {"sliding_window": int(hf.get("window_size", 256))}} if LOCAL in types else None})


def from_config(cfg: ModelConfig) -> dict:
    types = cfg.layer_types or [GLOBAL] * cfg.n_layers
    overrides = cfg.layer_overrides or {}
    if cfg.attn_scale != 1.0 or cfg.qkv_bias or not cfg.bias or cfg.positions != "learned" \
            or set(types) - {GLOBAL, LOCAL} or set(overrides) - {LOCAL} \
            or any(set(o) != {"sliding_window"} for o in overrides.values()) or cfg.sliding_window is not None:
        raise LlmarchError("model_type gpt_neo has unscaled attention scores (attn_scale 1.0), q, k, v without "
                           "biases, learned positions, and global or local (sliding) layers")
    # attention_types as runs of one layer each: [[["global"], 1], [["local"], 1], ...]
    act = require_hf_activation(cfg.ffn, "gpt_neo")
    return dict(model_type="gpt_neo", architectures=["GPTNeoForCausalLM"], vocab_size=cfg.vocab_size,
                max_position_embeddings=cfg.context_length, hidden_size=cfg.d_model, num_layers=cfg.n_layers,
                num_heads=cfg.n_heads, intermediate_size=cfg.ffn_hidden, activation_function=act,
                layer_norm_epsilon=cfg.norm_eps, attention_types=[[[t], 1] for t in types],
                window_size=overrides.get(LOCAL, {}).get("sliding_window", 256),
                tie_word_embeddings=cfg.tie_embeddings)


FAMILIES.register("gpt_neo")(Family(RULES, to_config, from_config, ignore=(r"\.attn\.attention\.(masked_)?bias$",)))
