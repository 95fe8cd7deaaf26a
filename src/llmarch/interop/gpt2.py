"""GPT-2 (`model_type: gpt2`). HF stores GPT-2's linear layers as Conv1D, (in, out), with q, k, v fused in
`c_attn` in the same q|k|v order as our `qkv_proj`."""
from __future__ import annotations

from ..config import ModelConfig
from ..presets import PRESETS
from .activations import read_activation, require_hf_activation
from .hf import FAMILIES, Family
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
    Rule.of("lm_head.weight", "lm_head.weight"),
]


def to_config(hf: dict) -> ModelConfig:
    d = hf.get("n_embd", 768)
    return ModelConfig(**{**PRESETS["gpt2"], "name": hf.get("_name_or_path") or "gpt2", "vocab_size": hf["vocab_size"],
                          "d_model": d, "n_layers": hf.get("n_layer", 12), "n_heads": hf.get("n_head", 12),
                          "ffn_hidden": hf.get("n_inner") or 4 * d, "context_length": hf.get("n_positions", 1024),
                          "norm_eps": hf.get("layer_norm_epsilon", 1e-5),
                          "ffn": read_activation(hf, "gpt2", "activation_function", "gelu_new"),
                          "tie_embeddings": hf.get("tie_word_embeddings", True), "type_ids_from_tokens": True})


def from_config(cfg: ModelConfig) -> dict:
    act = require_hf_activation(cfg.ffn, "gpt2")
    return dict(model_type="gpt2", architectures=["GPT2LMHeadModel"], vocab_size=cfg.vocab_size,
                n_positions=cfg.context_length, n_embd=cfg.d_model, n_layer=cfg.n_layers, n_head=cfg.n_heads,
                n_inner=cfg.ffn_hidden, activation_function=act, layer_norm_epsilon=cfg.norm_eps,
                resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
                tie_word_embeddings=cfg.tie_embeddings)


def canonical(name: str) -> str:
    """GPT2Model checkpoints (and the original hub files) store `h.0...` without the `transformer.` prefix."""
    return name if name.startswith(("transformer.", "lm_head.")) else "transformer." + name


FAMILIES.register("gpt2")(Family(RULES, to_config, from_config, ignore=(r"\.attn\.(masked_)?bias$",),
                                 canonical=canonical))
