"""RemBERT (`model_type: rembert`; Chung et al. 2021, "Rethinking Embedding Coupling in Pre-trained Language
Models"): BERT's post-norm encoder (bert.py's layout under `rembert.`) with the input and output embeddings
decoupled (§3): narrow input embeddings (`input_embedding_size`: our embed_dim, with their token types, positions
and LayerNorm at that width), projected into the stack by `encoder.embedding_hidden_mapping_in` (embed_proj), and an
untied MLM head that transforms to a wider `output_embedding_size` (our output_embed_dim: dense -> hidden_act ->
LayerNorm) before its own output matrix with a bias. Heads: the pooler + classifier, a per-token classifier, and
the causal LM (RemBertForCausalLM, is_decoder: the same head)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .bert import _W, body_rules
from .bert import from_config as bert_hf
from .bert import head_rules
from .bert import to_config as bert_config
from .hf import FAMILIES, Family
from .mapping import Rule

_HEAD = [("dense", "head_transform.dense"), ("LayerNorm", "head_transform.norm"), ("decoder", "lm_head")]
RULES = [*body_rules("rembert"),
         *[Rule.of(f"rembert.encoder.embedding_hidden_mapping_in.{w}", f"embed_proj.{w}") for w in _W],
         *[Rule.of(f"cls.predictions.{hf}.{w}", f"{ours}.{w}") for hf, ours in _HEAD for w in _W]]
IGNORE = (r"embeddings\.position_ids$",)


def to_config(hf: dict) -> ModelConfig:
    if hf.get("add_cross_attention", False):
        raise LlmarchError("RemBERT with add_cross_attention (a decoder over an encoder's output) is not supported")
    if hf.get("tie_word_embeddings", False):  # the output matrix is output_embedding_size wide, not the input's
        raise LlmarchError("RemBERT with tie_word_embeddings is not supported (its output embeddings are its own)")
    if hf["input_embedding_size"] == hf["hidden_size"]:  # its projection is then square; ours is left out
        raise LlmarchError("RemBERT with input_embedding_size = hidden_size is not supported (a narrower one)")
    cfg = bert_config({**hf, "tie_word_embeddings": False})
    return cfg.replace(name=hf.get("_name_or_path") or "rembert", hf_model_type="rembert",
                       embed_dim=hf["input_embedding_size"], output_embed_dim=hf["output_embedding_size"],
                       causal=bool(hf.get("is_decoder", False)))


def needs(cfg: ModelConfig) -> str | None:
    if cfg.norm_placement != "post" or cfg.final_norm or not cfg.embed_norm or cfg.position_offset \
            or cfg.positions != "learned" or cfg.tied_head or cfg.embed_width == cfg.d_model \
            or cfg.head == "lm" and not (cfg.head_transform and cfg.head_bias and cfg.head_transform_bias
                                         and cfg.head_mlp == 0):
        return ("BERT's post-norm blocks, embeddings narrower than d_model with their LayerNorm, learned positions "
                "from 0, and an untied LM head with its transform and biases")
    return None


def from_config(cfg: ModelConfig) -> dict:
    return {**bert_hf(cfg), "model_type": "rembert", "is_decoder": cfg.causal,
            "architectures": ["RemBertForCausalLM" if cfg.causal else "RemBertForMaskedLM"],
            "input_embedding_size": cfg.embed_width, "output_embedding_size": cfg.output_embed_width}


HEADS = head_rules("rembert.pooler.dense", "classifier", "classifier")

FAMILIES.register("rembert")(Family(RULES, to_config, from_config, IGNORE, heads={
    "classify": ("RemBertForSequenceClassification", HEADS["classify"]),
    "tokens": ("RemBertForTokenClassification", HEADS["tokens"])}, base_prefix="rembert.", needs=needs))
