"""LLaMA 1/2/3 (`model_type: llama`), and the shared reading of LLaMA-like configs that mistral.py,
qwen2.py and gemma.py extend. HF keeps q/k/v and gate/up as separate nn.Linear, which we fuse (`qkv_proj`,
`gate_up`); RoPE uses the same half-split layout, so no permutation is needed."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .mapping import Rule

_ATTN = "model.layers.{i}.self_attn."
_MLP = "model.layers.{i}.mlp."

RULES = [
    Rule.of("model.embed_tokens.weight", "embed.weight"),
    *[Rule.of(tuple(_ATTN + f"{p}_proj.{w}" for p in "qkv"), f"blocks.{{i}}.attn.qkv_proj.{w}")
      for w in ("weight", "bias")],
    *[Rule.of(_ATTN + f"o_proj.{w}", f"blocks.{{i}}.attn.o_proj.{w}") for w in ("weight", "bias")],
    *[Rule.of((_MLP + f"gate_proj.{w}", _MLP + f"up_proj.{w}"), f"blocks.{{i}}.mlp.gate_up.{w}")
      for w in ("weight", "bias")],
    *[Rule.of(_MLP + f"down_proj.{w}", f"blocks.{{i}}.mlp.down.{w}") for w in ("weight", "bias")],
    Rule.of("model.layers.{i}.input_layernorm.weight", "blocks.{i}.ln1.weight"),
    Rule.of("model.layers.{i}.post_attention_layernorm.weight", "blocks.{i}.ln2.weight"),
    Rule.of("model.norm.weight", "ln_final.weight"),
    Rule.of("lm_head.weight", "lm_head.weight"),
]
IGNORE = (r"rotary_emb\.inv_freq$",)
_GLU = {"silu": "swiglu", "gelu": "geglu", "gelu_pytorch_tanh": "geglu_tanh", "gelu_new": "geglu_tanh"}


def rope_fields(hf: dict) -> dict:
    """RoPE settings from `rope_parameters` (transformers 5) or `rope_theta` + `rope_scaling` (4.x)."""
    params = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    theta = params.get("rope_theta", hf.get("rope_theta", 10000.0))
    kind = params.get("rope_type", params.get("type", "default"))
    kind = "none" if kind == "default" else kind
    if kind not in ("none", "linear", "dynamic", "llama3", "yarn"):
        raise LlmarchError(f"rope type {kind!r} is not supported; supported: default, linear, dynamic, llama3, yarn")
    fields = dict(rope_theta=float(theta), rope_scaling=kind, rope_factor=float(params.get("factor") or 1.0))
    max_pos = hf.get("max_position_embeddings", 2048)
    if kind == "yarn":
        fields.update(yarn_fields(params, max_pos))
    if kind == "llama3":
        fields.update(rope_low_freq_factor=float(params["low_freq_factor"]),
                      rope_high_freq_factor=float(params["high_freq_factor"]),
                      rope_original_context=int(params.get("original_max_position_embeddings", max_pos)))
    if kind == "yarn":
        fields.update(yarn_fields(params, max_pos))
    if kind == "dynamic":  # positions may run past max_position_embeddings, as far as the factor stretches it
        fields.update(rope_original_context=max_pos, context_length=int(max_pos * fields["rope_factor"]))
    return fields


def yarn_fields(params: dict, max_pos: int) -> dict:
    """YaRN's settings as transformers' _compute_yarn_parameters reads them: no factor means
    max_position_embeddings / original_max_position_embeddings (DeepSeek-V3); beta_fast and beta_slow default
    to 32 and 1; truncate to True; attention_factor, mscale and mscale_all_dim stay unset unless given."""
    original = int(params["original_max_position_embeddings"])
    fields = dict(rope_factor=float(params.get("factor") or max_pos / original), rope_original_context=original,
                  rope_beta_fast=float(params.get("beta_fast") or 32),
                  rope_beta_slow=float(params.get("beta_slow") or 1),
                  rope_truncate=bool(params.get("truncate", True)))
    for ours, theirs in (("rope_attn_factor", "attention_factor"), ("rope_mscale", "mscale"),
                         ("rope_mscale_all_dim", "mscale_all_dim")):
        if params.get(theirs) is not None:
            fields[ours] = float(params[theirs])
    return fields


def rope_fraction(hf: dict, default: float) -> float:
    """The share of each head RoPE rotates: partial_rotary_factor in rope_parameters (transformers 5) or at the top of
    config.json (4.x), else the family's config class default."""
    params = hf.get("rope_parameters") or {}
    return float(params.get("partial_rotary_factor", hf.get("partial_rotary_factor", default)))


def rope_parameters(cfg: ModelConfig, partial: bool = False) -> dict:
    """rope_parameters as transformers 5 writes them; partial: with partial_rotary_factor, for the families that read
    it (whose config classes default it to other than 1, so it is written even at 1)."""
    params = {"rope_type": "default" if cfg.rope_scaling == "none" else cfg.rope_scaling, "rope_theta": cfg.rope_theta}
    if partial:
        params["partial_rotary_factor"] = cfg.rope_fraction
    if cfg.rope_scaling != "none":
        params["factor"] = cfg.rope_factor
    if cfg.rope_scaling == "llama3":
        params.update(low_freq_factor=cfg.rope_low_freq_factor, high_freq_factor=cfg.rope_high_freq_factor,
                      original_max_position_embeddings=cfg.rope_original_context)
    if cfg.rope_scaling == "yarn":
        params.update(original_max_position_embeddings=cfg.rope_original_context or cfg.context_length,
                      beta_fast=cfg.rope_beta_fast, beta_slow=cfg.rope_beta_slow, truncate=cfg.rope_truncate)
        params.update({theirs: value for theirs, value in (("attention_factor", cfg.rope_attn_factor),
                                                           ("mscale", cfg.rope_mscale),
                                                           ("mscale_all_dim", cfg.rope_mscale_all_dim))
                       if value is not None})
    return params


def llama_like_config(hf: dict, **overrides) -> ModelConfig:
    d, heads = hf["hidden_size"], hf["num_attention_heads"]
    act = hf.get("hidden_act", hf.get("hidden_activation", "silu"))
    bias = hf.get("attention_bias", False)
    fields = dict(name=hf.get("_name_or_path") or hf["model_type"], hf_model_type=hf["model_type"],
                  vocab_size=hf["vocab_size"], d_model=d, n_layers=hf["num_hidden_layers"], n_heads=heads,
                  n_kv_heads=hf.get("num_key_value_heads") or heads, head_dim=hf.get("head_dim") or d // heads,
                  ffn=_GLU.get(act, act), ffn_hidden=hf["intermediate_size"], norm="rmsnorm",
                  norm_eps=hf.get("rms_norm_eps", 1e-6), positions="rope", bias=hf.get("mlp_bias", False),
                  qkv_bias=bias, norm_bias=False, tie_embeddings=hf.get("tie_word_embeddings", False),
                  context_length=hf.get("max_position_embeddings", 2048))
    fields.update(rope_fields(hf))
    if bias != fields["bias"]:
        raise LlmarchError("attention_bias and mlp_bias differ; llmarch ties o_proj's bias to the MLP's")
    fields.update(overrides)
    return ModelConfig(**fields)


def llama_like_hf(cfg: ModelConfig, **extra) -> dict:
    act = {v: k for k, v in _GLU.items() if k != "gelu_new"}[cfg.ffn]
    out = dict(model_type=cfg.hf_model_type, vocab_size=cfg.vocab_size, hidden_size=cfg.d_model,
               intermediate_size=cfg.ffn_hidden, num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
               num_key_value_heads=cfg.n_kv_heads, head_dim=cfg.head_dim, hidden_act=act,
               max_position_embeddings=(cfg.rope_original_context if cfg.rope_scaling == "dynamic"
                                        else cfg.context_length),
               rms_norm_eps=cfg.norm_eps, rope_parameters=rope_parameters(cfg), tie_word_embeddings=cfg.tie_embeddings,
               attention_bias=cfg.qkv_bias, mlp_bias=cfg.bias)
    out.update(extra)
    return out


def to_config(hf: dict) -> ModelConfig:
    return llama_like_config(hf)


def causal_only(cfg: ModelConfig) -> None:
    """A causal decoder family's refusal of a bidirectional model (a diffusion LM read from GGUF, as Dream or LLaDA),
    which its config.json cannot mark and transformers would run causally."""
    if not cfg.causal:
        raise LlmarchError(f"model_type {cfg.hf_model_type} is causal; this model attends both ways (causal=False)")


def from_config(cfg: ModelConfig) -> dict:
    causal_only(cfg)
    return llama_like_hf(cfg, architectures=["LlamaForCausalLM"])


FAMILIES.register("llama")(Family(RULES, to_config, from_config, IGNORE))
