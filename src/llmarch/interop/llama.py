"""LLaMA (`model_type: llama`): HF keeps q/k/v and gate/up as separate nn.Linear, which we fuse
(`qkv_proj`, `gate_up`); RoPE uses the same half-split layout, so no permutation is needed."""
from __future__ import annotations

from ..config import ModelConfig
from .mapping import Rule

_ATTN = "model.layers.{i}.self_attn."
_MLP = "model.layers.{i}.mlp."

RULES = [
    Rule.of("model.embed_tokens.weight", "embed.weight"),
    Rule.of(tuple(_ATTN + f"{p}_proj.weight" for p in "qkv"), "blocks.{i}.attn.qkv_proj.weight"),
    Rule.of(_ATTN + "o_proj.weight", "blocks.{i}.attn.o_proj.weight"),
    Rule.of((_MLP + "gate_proj.weight", _MLP + "up_proj.weight"), "blocks.{i}.mlp.gate_up.weight"),
    Rule.of(_MLP + "down_proj.weight", "blocks.{i}.mlp.down.weight"),
    Rule.of("model.layers.{i}.input_layernorm.weight", "blocks.{i}.ln1.weight"),
    Rule.of("model.layers.{i}.post_attention_layernorm.weight", "blocks.{i}.ln2.weight"),
    Rule.of("model.norm.weight", "ln_final.weight"),
    Rule.of("lm_head.weight", "lm_head.weight"),
]


def hf_config(cfg: ModelConfig) -> dict:
    return dict(model_type="llama", vocab_size=cfg.vocab_size, hidden_size=cfg.d_model,
                intermediate_size=cfg.ffn_hidden, num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
                num_key_value_heads=cfg.n_kv_heads, head_dim=cfg.head_dim, max_position_embeddings=cfg.context_length,
                rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_theta, tie_word_embeddings=cfg.tie_embeddings,
                attention_bias=cfg.bias, mlp_bias=cfg.bias, hidden_act="silu")
