"""DistilBERT (`model_type: distilbert`; Sanh et al. 2019, "DistilBERT, a distilled version of BERT"): BERT's
post-norm encoder (bidirectional attention, exact-GELU MLP, LayerNorms of eps 1e-12) with no token types, under
its own names: `q_lin`, `k_lin`, `v_lin`, `out_lin`, `sa_layer_norm`, `ffn.lin1`/`lin2`, `output_layer_norm`.
Heads: the MLM head (vocab_transform -> GELU -> vocab_layer_norm -> tied vocab_projector with its bias), the
sequence classifier (the first token through pre_classifier, then ReLU, not BERT's tanh: pooler_act 'relu', then
classifier) and the token classifier. Its position table is stored whether learned or sinusoidal
(sinusoidal_pos_embds fills it at initialisation), so both read as learned positions."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .activations import exportable, hf_activation, read_activation
from .hf import FAMILIES, Family
from .mapping import Rule

_E, _L = "distilbert.embeddings.", "distilbert.transformer.layer.{i}."
_W = ("weight", "bias")
_LAYER = [("attention.out_lin", "attn.o_proj"), ("sa_layer_norm", "ln1"), ("ffn.lin1", "mlp.up"),
          ("ffn.lin2", "mlp.down"), ("output_layer_norm", "ln2")]
RULES = [
    Rule.of(_E + "word_embeddings.weight", "embed.weight"),
    Rule.of(_E + "position_embeddings.weight", "positions.weight"),
    *[Rule.of(_E + f"LayerNorm.{w}", f"embed_norm.{w}") for w in _W],
    *[Rule.of(tuple(_L + f"attention.{p}_lin.{w}" for p in "qkv"), f"blocks.{{i}}.attn.qkv_proj.{w}") for w in _W],
    *[Rule.of(_L + f"{hf}.{w}", f"blocks.{{i}}.{ours}.{w}") for hf, ours in _LAYER for w in _W],
    *[Rule.of(f"vocab_transform.{w}", f"head_transform.dense.{w}") for w in _W],
    *[Rule.of(f"vocab_layer_norm.{w}", f"head_transform.norm.{w}") for w in _W],
    Rule.of("vocab_projector.weight", "lm_head.weight"),
    Rule.of("vocab_projector.bias", "lm_head.bias"),
]
HEADS = {"classify": [*[Rule.of(f"pre_classifier.{w}", f"pooler.dense.{w}") for w in _W],
                      *[Rule.of(f"classifier.{w}", f"classifier.{w}") for w in _W]],
         "tokens": [Rule.of(f"classifier.{w}", f"classifier.{w}") for w in _W]}


def to_config(hf: dict) -> ModelConfig:
    return ModelConfig(name=hf.get("_name_or_path") or "distilbert", hf_model_type="distilbert",
                       vocab_size=hf["vocab_size"], d_model=hf["dim"], n_layers=hf["n_layers"], n_heads=hf["n_heads"],
                       ffn=read_activation(hf, "distilbert", "activation", "gelu"), ffn_hidden=hf["hidden_dim"],
                       norm="layernorm", norm_eps=1e-12,
                       norm_placement="post", positions="learned", causal=False, type_vocab_size=0, embed_norm=True,
                       head_transform=True, head_bias=True, tie_embeddings=hf.get("tie_word_embeddings", True),
                       pooler_act="relu", context_length=hf.get("max_position_embeddings", 512))


def from_config(cfg: ModelConfig) -> dict:
    if (cfg.norm, cfg.norm_eps, cfg.norm_placement, cfg.positions, cfg.causal, cfg.type_vocab_size) != (
            "layernorm", 1e-12, "post", "learned", False, 0) or not exportable(cfg.ffn) or not cfg.bias \
            or cfg.head == "classify" and cfg.pooler_act != "relu" or cfg.n_kv_heads != cfg.n_heads:
        raise LlmarchError("model_type distilbert needs a bidirectional post-norm encoder (LayerNorm eps 1e-12, "
                           "learned positions, no token types, biases, an ungated MLP, MHA) and a ReLU pooler")
    return dict(model_type="distilbert", architectures=["DistilBertForMaskedLM"], vocab_size=cfg.vocab_size,
                dim=cfg.d_model, n_layers=cfg.n_layers, n_heads=cfg.n_heads, hidden_dim=cfg.ffn_hidden,
                activation=hf_activation(cfg.ffn), max_position_embeddings=cfg.context_length,
                sinusoidal_pos_embds=False, tie_word_embeddings=cfg.tie_embeddings)


FAMILIES.register("distilbert")(Family(RULES, to_config, from_config, heads={
    "classify": ("DistilBertForSequenceClassification", HEADS["classify"]),
    "tokens": ("DistilBertForTokenClassification", HEADS["tokens"])}, base_prefix="distilbert."))
