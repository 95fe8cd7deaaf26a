"""LLaMA (`model_type: llama`): HF keeps q/k/v/o and gate/up/down as separate nn.Linear, RoPE in the
half-split layout we use, so every tensor maps one to one."""
from __future__ import annotations

from ..config import ModelConfig
from .mapping import Rule

_LAYER = [("self_attn.q_proj", "attn.q_proj"), ("self_attn.k_proj", "attn.k_proj"), ("self_attn.v_proj", "attn.v_proj"),
          ("self_attn.o_proj", "attn.o_proj"), ("mlp.gate_proj", "mlp.gate"), ("mlp.up_proj", "mlp.up"),
          ("mlp.down_proj", "mlp.down"), ("input_layernorm", "ln1"), ("post_attention_layernorm", "ln2")]

RULES = [
    Rule("model.embed_tokens.weight", ("embed.weight",)),
    *[Rule(f"model.layers.{{i}}.{hf}.weight", (f"blocks.{{i}}.{ours}.weight",)) for hf, ours in _LAYER],
    Rule("model.norm.weight", ("ln_final.weight",)),
    Rule("lm_head.weight", ("lm_head.weight",)),
]


def hf_config(cfg: ModelConfig) -> dict:
    return dict(model_type="llama", vocab_size=cfg.vocab_size, hidden_size=cfg.d_model,
                intermediate_size=cfg.ffn_hidden, num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
                num_key_value_heads=cfg.n_kv_heads, head_dim=cfg.head_dim, max_position_embeddings=cfg.context_length,
                rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_theta, tie_word_embeddings=cfg.tie_embeddings,
                attention_bias=cfg.bias, mlp_bias=cfg.bias, hidden_act="silu")
