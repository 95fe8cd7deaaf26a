"""ALBERT (`model_type: albert`; Lan et al. 2020, "ALBERT: A Lite BERT for Self-supervised Learning of Language
Representations", §3.1): BERT's post-norm encoder with its two parameter reductions.
- Factorized embeddings: token, position and token-type embeddings of width E (`embedding_size`, our embed_dim)
  under their LayerNorm, projected to the hidden width by `encoder.embedding_hidden_mapping_in` (our embed_proj);
  the MLM head projects back (dense: hidden -> E, hidden_act, LayerNorm) before the tied decoder and its bias.
- Cross-layer sharing: `num_hidden_groups` blocks of weights (`albert_layer_groups.{g}`), layer i running group
  int(i / (L / G)) (our layer_groups; ALBERT's checkpoints: one group for all layers).
Names: `attention.query/key/value/dense/LayerNorm`, `ffn`, `ffn_output`, `full_layer_layer_norm`. Heads: the
masked LM; AlbertModel reads as head `embed`. Refused: inner_group_num > 1 (several layers in a group), and an
embedding width equal to the hidden width (the projection is then kept by ALBERT, absent in llmarch)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .bert import from_config as bert_hf
from .bert import to_config as bert_config
from .hf import FAMILIES, Family
from .mapping import Rule

_W = ("weight", "bias")
_E, _L = "albert.embeddings.", "albert.encoder.albert_layer_groups.{i}.albert_layers.0."
_LAYER = [("attention.dense", "attn.o_proj"), ("attention.LayerNorm", "ln1"), ("ffn", "mlp.up"),
          ("ffn_output", "mlp.down"), ("full_layer_layer_norm", "ln2")]
RULES = [
    Rule.of(_E + "word_embeddings.weight", "embed.weight"),
    Rule.of(_E + "position_embeddings.weight", "positions.weight"),
    Rule.of(_E + "token_type_embeddings.weight", "token_types.weight"),
    *[Rule.of(_E + f"LayerNorm.{w}", f"embed_norm.{w}") for w in _W],
    *[Rule.of(f"albert.encoder.embedding_hidden_mapping_in.{w}", f"embed_proj.{w}") for w in _W],
    # {i} counts groups: blocks past layer_groups do not exist, and their rules are skipped both ways
    *[Rule.of(tuple(_L + f"attention.{p}.{w}" for p in ("query", "key", "value")), f"blocks.{{i}}.attn.qkv_proj.{w}")
      for w in _W],
    *[Rule.of(_L + f"{hf}.{w}", f"blocks.{{i}}.{ours}.{w}") for hf, ours in _LAYER for w in _W],
    *[Rule.of(f"predictions.dense.{w}", f"head_transform.dense.{w}") for w in _W],
    *[Rule.of(f"predictions.LayerNorm.{w}", f"head_transform.norm.{w}") for w in _W],
    Rule.of("predictions.decoder.weight", "lm_head.weight"), Rule.of("predictions.bias", "lm_head.bias"),
]
IGNORE = (r"^predictions\.decoder\.bias$", r"embeddings\.(position|token_type)_ids$")


def to_config(hf: dict) -> ModelConfig:
    if hf.get("inner_group_num", 1) != 1:
        raise LlmarchError(f"albert: inner_group_num {hf['inner_group_num']} is not supported (one layer per group)")
    width = hf.get("embedding_size", 128)
    if width == hf["hidden_size"]:
        raise LlmarchError("albert: embedding_size equal to hidden_size is not supported (ALBERT still projects "
                           "them; llmarch projects only between different widths)")
    cfg = bert_config({"hidden_act": "gelu_new", **hf})
    return cfg.replace(name=hf.get("_name_or_path") or "albert", hf_model_type="albert", embed_dim=width,
                       layer_groups=hf.get("num_hidden_groups", 1), pad_id=hf.get("pad_token_id") or 0)


def needs(cfg: ModelConfig) -> str | None:
    if cfg.embed_width == cfg.d_model or not cfg.layer_groups or cfg.norm_placement != "post" or cfg.causal \
            or cfg.positions != "learned" or cfg.position_offset or not cfg.bias or cfg.n_kv_heads != cfg.n_heads \
            or cfg.ffn not in ("gelu", "gelu_tanh", "relu") or cfg.head == "lm" and not (cfg.head_transform
                                                                                        and cfg.head_bias):
        return ("a bidirectional post-norm encoder with biases, learned positions from 0, embeddings narrower or "
                "wider than d_model (embed_dim), layer_groups > 0, and BERT's MLM head")
    return None


def from_config(cfg: ModelConfig) -> dict:
    return {**bert_hf(cfg), "model_type": "albert", "architectures": ["AlbertForMaskedLM"],
            "embedding_size": cfg.embed_width, "num_hidden_groups": cfg.layer_groups, "inner_group_num": 1,
            "pad_token_id": cfg.pad_id}


FAMILIES.register("albert")(Family(RULES, to_config, from_config, IGNORE, needs=needs, base_prefix="albert."))
