"""GPT-2 (`model_type: gpt2`): config fields and weight names. HF stores GPT-2's linear layers as Conv1D,
(in, out), with q, k, v fused in `c_attn` in the same q|k|v order as our `qkv_proj`."""
from __future__ import annotations

from ..config import ModelConfig
from .mapping import Rule

_LAYER = [("ln_1", "ln1", "same"), ("attn.c_attn", "attn.qkv_proj", "transposed"),
          ("attn.c_proj", "attn.o_proj", "transposed"), ("ln_2", "ln2", "same"),
          ("mlp.c_fc", "mlp.up", "transposed"), ("mlp.c_proj", "mlp.down", "transposed")]

RULES = [
    Rule.of("transformer.wte.weight", "embed.weight"),
    Rule.of("transformer.wpe.weight", "positions.weight"),
    *[Rule.of(f"transformer.h.{{i}}.{hf}.weight", f"blocks.{{i}}.{ours}.weight", layout)
      for hf, ours, layout in _LAYER],
    *[Rule.of(f"transformer.h.{{i}}.{hf}.bias", f"blocks.{{i}}.{ours}.bias") for hf, ours, _ in _LAYER],
    Rule.of("transformer.ln_f.weight", "ln_final.weight"),
    Rule.of("transformer.ln_f.bias", "ln_final.bias"),
]


def hf_config(cfg: ModelConfig) -> dict:
    """GPT2Config fields for a GPT-2-shaped llmarch config."""
    return dict(model_type="gpt2", vocab_size=cfg.vocab_size, n_positions=cfg.context_length, n_embd=cfg.d_model,
                n_layer=cfg.n_layers, n_head=cfg.n_heads, n_inner=cfg.ffn_hidden, activation_function="gelu_new",
                layer_norm_epsilon=cfg.norm_eps, resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout,
                attn_pdrop=cfg.dropout, tie_word_embeddings=True)
