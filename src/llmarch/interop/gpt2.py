"""GPT-2 (`model_type: gpt2`): config fields and weight names. HF stores GPT-2's linear layers as Conv1D,
(in, out), and the q, k, v projections fused into one `c_attn`."""
from __future__ import annotations

from ..config import ModelConfig
from .mapping import Rule

RULES = [
    Rule("transformer.wte.weight", ("embed.weight",)),
    Rule("transformer.wpe.weight", ("positions.weight",)),
    Rule("transformer.h.{i}.ln_1.weight", ("blocks.{i}.ln1.weight",)),
    Rule("transformer.h.{i}.ln_1.bias", ("blocks.{i}.ln1.bias",)),
    Rule("transformer.h.{i}.attn.c_attn.weight",
         ("blocks.{i}.attn.q_proj.weight", "blocks.{i}.attn.k_proj.weight", "blocks.{i}.attn.v_proj.weight"),
         "fused_transposed"),
    Rule("transformer.h.{i}.attn.c_attn.bias",
         ("blocks.{i}.attn.q_proj.bias", "blocks.{i}.attn.k_proj.bias", "blocks.{i}.attn.v_proj.bias"), "fused"),
    Rule("transformer.h.{i}.attn.c_proj.weight", ("blocks.{i}.attn.o_proj.weight",), "transposed"),
    Rule("transformer.h.{i}.attn.c_proj.bias", ("blocks.{i}.attn.o_proj.bias",)),
    Rule("transformer.h.{i}.ln_2.weight", ("blocks.{i}.ln2.weight",)),
    Rule("transformer.h.{i}.ln_2.bias", ("blocks.{i}.ln2.bias",)),
    Rule("transformer.h.{i}.mlp.c_fc.weight", ("blocks.{i}.mlp.up.weight",), "transposed"),
    Rule("transformer.h.{i}.mlp.c_fc.bias", ("blocks.{i}.mlp.up.bias",)),
    Rule("transformer.h.{i}.mlp.c_proj.weight", ("blocks.{i}.mlp.down.weight",), "transposed"),
    Rule("transformer.h.{i}.mlp.c_proj.bias", ("blocks.{i}.mlp.down.bias",)),
    Rule("transformer.ln_f.weight", ("ln_final.weight",)),
    Rule("transformer.ln_f.bias", ("ln_final.bias",)),
]


def hf_config(cfg: ModelConfig) -> dict:
    """GPT2Config fields for a GPT-2-shaped llmarch config (no dropout: attn/resid/embd pdrop = cfg.dropout)."""
    return dict(model_type="gpt2", vocab_size=cfg.vocab_size, n_positions=cfg.context_length, n_embd=cfg.d_model,
                n_layer=cfg.n_layers, n_head=cfg.n_heads, n_inner=cfg.ffn_hidden, activation_function="gelu_new",
                layer_norm_epsilon=cfg.norm_eps, resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout,
                attn_pdrop=cfg.dropout, tie_word_embeddings=True)
