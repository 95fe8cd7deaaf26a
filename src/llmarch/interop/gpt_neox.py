"""GPT-NeoX / Pythia (`model_type: gpt_neox`): LayerNorm with biases, biases everywhere, exact-GELU MLP,
rotary embeddings on the first `partial_rotary_factor` of each head's dims, a parallel residual
(x + attn(ln1(x)) + mlp(ln2(x))) when `use_parallel_residual`, an untied head, and q, k, v fused per head in
`query_key_value` (layout `neox_qkv`)."""
from __future__ import annotations

from ..config import ModelConfig
from .hf import FAMILIES, Family
from .mapping import Rule

_L = "gpt_neox.layers.{i}."
_LAYER = [("input_layernorm", "ln1", "same"), ("post_attention_layernorm", "ln2", "same"),
          ("attention.query_key_value", "attn.qkv_proj", "neox_qkv"), ("attention.dense", "attn.o_proj", "same"),
          ("mlp.dense_h_to_4h", "mlp.up", "same"), ("mlp.dense_4h_to_h", "mlp.down", "same")]

RULES = [
    Rule.of("gpt_neox.embed_in.weight", "embed.weight"),
    *[Rule.of(_L + f"{hf}.{w}", f"blocks.{{i}}.{ours}.{w}", layout) for hf, ours, layout in _LAYER
      for w in ("weight", "bias")],
    Rule.of("gpt_neox.final_layer_norm.weight", "ln_final.weight"),
    Rule.of("gpt_neox.final_layer_norm.bias", "ln_final.bias"),
    Rule.of("embed_out.weight", "lm_head.weight"),
]
IGNORE = (r"rotary_emb\.inv_freq$", r"attention\.(masked_)?bias$")


def to_config(hf: dict) -> ModelConfig:
    rope = hf.get("rope_parameters") or {}
    return ModelConfig(name=hf.get("_name_or_path") or "gpt_neox", hf_model_type="gpt_neox",
                       vocab_size=hf["vocab_size"],
                       d_model=hf["hidden_size"], n_layers=hf["num_hidden_layers"], n_heads=hf["num_attention_heads"],
                       ffn="gelu" if hf.get("hidden_act", "gelu") == "gelu" else hf["hidden_act"],
                       ffn_hidden=hf["intermediate_size"], norm="layernorm", norm_eps=hf.get("layer_norm_eps", 1e-5),
                       block="parallel" if hf.get("use_parallel_residual", True) else "sequential",
                       positions="rope", rope_theta=float(rope.get("rope_theta", hf.get("rotary_emb_base", 10000.0))),
                       rope_fraction=float(rope.get("partial_rotary_factor", hf.get("rotary_pct", 0.25))),
                       bias=hf.get("attention_bias", True), tie_embeddings=hf.get("tie_word_embeddings", False),
                       context_length=hf.get("max_position_embeddings", 2048))


def from_config(cfg: ModelConfig) -> dict:
    return dict(model_type="gpt_neox", architectures=["GPTNeoXForCausalLM"], vocab_size=cfg.vocab_size,
                hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
                intermediate_size=cfg.ffn_hidden, hidden_act=cfg.ffn, layer_norm_eps=cfg.norm_eps,
                use_parallel_residual=cfg.block == "parallel", max_position_embeddings=cfg.context_length,
                rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta,
                                 "partial_rotary_factor": cfg.rope_fraction},
                attention_bias=cfg.bias, tie_word_embeddings=cfg.tie_embeddings)


FAMILIES.register("gpt_neox")(Family(RULES, to_config, from_config, IGNORE))
