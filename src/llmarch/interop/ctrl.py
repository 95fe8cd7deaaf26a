"""CTRL (`model_type: ctrl`; Keskar et al. 2019, "CTRL: A Conditional Transformer Language Model for Controllable
Generation", §3): a pre-norm decoder (LayerNorms of eps 1e-6 before each sublayer, layer_norm_epsilon on the one
after the last block), q, k, v (`Wq`, `Wk`, `Wv`) and `dense` with biases, a ReLU MLP of `dff` (`ffn.0`,
`ffn.2`), token embeddings times sqrt(d_model), and fixed sinusoidal positions with every sine first, then every
cosine, at frequencies 10000^(-2i/d) (positions sinusoidal_halves), not stored. The LM head has a bias, and is
tied to the embeddings as config.json's tie_word_embeddings says. transformers embeds token_type_ids with the
token table (scaled too), as llmarch does here (type_ids_from_tokens)."""
from __future__ import annotations

from ..config import ModelConfig
from .expressible import refuse_unless_read_back
from .hf import FAMILIES, Family
from .mapping import Rule

_L = "transformer.h.{i}."
_W = ("weight", "bias")
_LAYER = [("multi_head_attention.dense", "attn.o_proj"), ("layernorm1", "ln1"), ("ffn.0", "mlp.up"),
          ("ffn.2", "mlp.down"), ("layernorm2", "ln2")]
RULES = [
    Rule.of("transformer.w.weight", "embed.weight"),
    *[Rule.of(tuple(_L + f"multi_head_attention.W{p}.{w}" for p in "qkv"), f"blocks.{{i}}.attn.qkv_proj.{w}")
      for w in _W],
    *[Rule.of(_L + f"{hf}.{w}", f"blocks.{{i}}.{ours}.{w}") for hf, ours in _LAYER for w in _W],
    *[Rule.of(f"transformer.layernorm.{w}", f"ln_final.{w}") for w in _W],
    *[Rule.of(f"lm_head.{w}", f"lm_head.{w}") for w in _W],
]
BLOCK_EPS = 1e-6  # EncoderLayer's LayerNorms: fixed, not layer_norm_epsilon


def to_config(hf: dict) -> ModelConfig:
    eps = hf.get("layer_norm_epsilon", 1e-6)
    return ModelConfig(name=hf.get("_name_or_path") or "ctrl", hf_model_type="ctrl",
                       vocab_size=hf.get("vocab_size", 246534), d_model=hf.get("n_embd", 1280),
                       n_layers=hf.get("n_layer", 48), n_heads=hf.get("n_head", 16), ffn="relu",
                       ffn_hidden=hf.get("dff", 8192), norm="layernorm", norm_eps=BLOCK_EPS,
                       final_norm_eps=None if eps == BLOCK_EPS else eps, positions="sinusoidal_halves",
                       embed_scale=True, head_bias=True, tie_embeddings=hf.get("tie_word_embeddings", True),
                       type_ids_from_tokens=True,
                       context_length=hf.get("n_positions", 256))


def from_config(cfg: ModelConfig) -> dict:
    hf = dict(model_type="ctrl", architectures=["CTRLLMHeadModel"], vocab_size=cfg.vocab_size,
              n_positions=cfg.context_length, n_embd=cfg.d_model, dff=cfg.ffn_hidden, n_layer=cfg.n_layers,
              n_head=cfg.n_heads, layer_norm_epsilon=cfg.final_norm_eps or cfg.norm_eps, resid_pdrop=cfg.dropout,
              embd_pdrop=cfg.dropout, tie_word_embeddings=cfg.tie_embeddings)
    return refuse_unless_read_back(cfg, hf, to_config)


def canonical(name: str) -> str:
    """CTRLModel checkpoints store `h.0...` without `transformer.`."""
    return name if name.startswith(("transformer.", "lm_head.")) else "transformer." + name


FAMILIES.register("ctrl")(Family(RULES, to_config, from_config, ignore=(r"pos_encoding$",), canonical=canonical))
