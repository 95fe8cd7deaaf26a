"""Bamba (`model_type: bamba`, transformers' BambaForCausalLM; IBM's Bamba-9B): a hybrid stack of Mamba-2 layers
(`mamba.*`, transformers' Mamba-2 tensor names, as granite_hybrid.py reads them) and attention layers at
`attn_layer_indices` (GQA, RoPE on the first `partial_rotary_factor` of each head in the half-split layout), each
followed by a dense SwiGLU (`feed_forward.{gate,up,down}_proj`, biases where `mlp_bias`) after `pre_ff_layernorm`,
and `final_layernorm`. In llmarch: layer_types with a "mamba2" mixer override, as Granite 4.0, without Granite's
scalars or experts. The router z-loss coefficient is a training term of a model with no router: not held."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .granite import NEEDS, unexpressible
from .granite_hybrid import ATTENTION, MAMBA, mamba_fields, mamba_hf
from .hf import FAMILIES, Family
from .llama import IGNORE, rope_fields, rope_parameters
from .mamba import MAMBA2_TENSORS
from .mapping import Rule

_L = "model.layers.{i}."
_FF = _L + "feed_forward."
_W = ("weight", "bias")


def rules(attn: str = "blocks.{i}.attn.", mamba: str = "blocks.{i}.mixer.") -> list[Rule]:
    """Bamba's tensor names, our attention's under `attn` and Mamba-2's under `mamba` (Falcon-H1 holds the same
    names, both parts in every layer: its mixer 'parallel' keeps them as mixer.attention and mixer.mamba2)."""
    return [
        Rule.of("model.embed_tokens.weight", "embed.weight"),
        Rule.of(_L + "input_layernorm.weight", "blocks.{i}.ln1.weight"),
        Rule.of(_L + "pre_ff_layernorm.weight", "blocks.{i}.ln2.weight"),
        *[Rule.of(tuple(_L + f"self_attn.{p}_proj.{w}" for p in "qkv"), f"{attn}qkv_proj.{w}") for w in _W],
        *[Rule.of(_L + f"self_attn.o_proj.{w}", f"{attn}o_proj.{w}") for w in _W],
        *[Rule.of(_L + "mamba." + t, mamba + t) for t in MAMBA2_TENSORS],
        *[Rule.of((_FF + f"gate_proj.{w}", _FF + f"up_proj.{w}"), f"blocks.{{i}}.mlp.gate_up.{w}") for w in _W],
        *[Rule.of(_FF + f"down_proj.{w}", f"blocks.{{i}}.mlp.down.{w}") for w in _W],
        Rule.of("model.final_layernorm.weight", "ln_final.weight"),
        Rule.of("lm_head.weight", "lm_head.weight"),
    ]


RULES = rules()


def to_config(hf: dict) -> ModelConfig:
    if hf.get("hidden_act", "silu") != "silu":
        raise LlmarchError(f"bamba: hidden_act {hf['hidden_act']!r} is not supported (silu only)")
    if bool(hf.get("attention_bias")) != bool(hf.get("mlp_bias")):
        raise LlmarchError("bamba: attention_bias and mlp_bias differ; llmarch ties o_proj's bias to the MLP's")
    d, heads, n = hf["hidden_size"], hf["num_attention_heads"], hf["num_hidden_layers"]
    attn = set(hf.get("attn_layer_indices") or [])
    types = [ATTENTION if i in attn else MAMBA for i in range(n)]
    rope = hf.get("rope_parameters") or {}
    eos = hf.get("eos_token_id")
    return ModelConfig(
        name=hf.get("_name_or_path") or "bamba", hf_model_type="bamba", vocab_size=hf["vocab_size"], d_model=d,
        n_layers=n, n_heads=heads, n_kv_heads=hf.get("num_key_value_heads") or heads,
        head_dim=hf.get("head_dim") or d // heads, ffn="swiglu", ffn_hidden=hf["intermediate_size"], norm="rmsnorm",
        norm_eps=hf.get("rms_norm_eps", 1e-5), positions="rope", bias=bool(hf.get("mlp_bias")),
        qkv_bias=bool(hf.get("attention_bias")), tie_embeddings=hf.get("tie_word_embeddings", False),
        context_length=hf.get("max_position_embeddings", 262144), layer_types=types,
        layer_overrides={MAMBA: {"mixer": "mamba2"}} if MAMBA in types else None,
        rope_fraction=float(rope.get("partial_rotary_factor", 1.0)), eos_id=eos if isinstance(eos, int) else None,
        **mamba_fields(hf), **rope_fields(hf))


# what transformers' Bamba computes beyond its layer types and partial RoPE: Granite's layout without its scalars
_NEEDS = {**{k: v for k, v in NEEDS.items() if k not in ("mixer", "layer_types", "rope_fraction")},
          "attn_period": 0, "attn_scale": None, "embed_multiplier": 1.0, "residual_multiplier": 1.0,
          "logit_divisor": 1.0}


def _unexpressible(cfg: ModelConfig) -> str | None:
    return unexpressible(cfg, _NEEDS)


def from_config(cfg: ModelConfig) -> dict:
    mixers = [cfg.layer_mixer(i) for i in range(cfg.n_layers)]
    if cfg.ffn != "swiglu" or set(mixers) - {"attention", "mamba2"}:
        raise LlmarchError("model_type bamba needs attention and mamba2 layers and a dense swiglu FFN")
    out = dict(architectures=["BambaForCausalLM"], model_type="bamba", vocab_size=cfg.vocab_size,
               hidden_size=cfg.d_model, intermediate_size=cfg.ffn_hidden, num_hidden_layers=cfg.n_layers,
               num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads, head_dim=cfg.head_dim,
               hidden_act="silu", max_position_embeddings=cfg.context_length, rms_norm_eps=cfg.norm_eps,
               tie_word_embeddings=cfg.tie_embeddings, attention_bias=cfg.qkv_bias, mlp_bias=cfg.bias,
               attn_layer_indices=[i for i, m in enumerate(mixers) if m == "attention"],
               rope_parameters=rope_parameters(cfg, partial=True),
               **mamba_hf(cfg))
    if cfg.eos_id is not None:
        out["eos_token_id"] = cfg.eos_id
    return out


FAMILIES.register("bamba")(Family(RULES, to_config, from_config, IGNORE, needs=_unexpressible))
