"""RoCBert (`model_type: roc_bert`; Su et al. 2022, "RoCBert: Robust Chinese Bert with Multimodal Contrastive
Pretraining"): BERT (bert.py's layout and heads under `roc_bert.`) whose input embedding also reads each token's
glyph-shape and pronunciation ids (`input_shape_ids`, `input_pronunciation_ids`, which RoCBertTokenizer looks up in
its word_shape.json / word_pronunciation.json beside the token ids). llmarch's forward carries token ids only, so a
checkpoint is read as transformers runs it when given neither: with `concat_input`, the word, shape and
pronunciation vectors concatenated and mapped back to hidden_size by `map_inputs_layer` (§3.2) read as the map of
the word vector alone (our `token_proj`, the map's word columns: the shape and pronunciation ids transformers fills
in are 0, the tables' padding rows, zero as nn.Embedding's padding_idx keeps them); without it, the shape and
pronunciation vectors are added after the embedding LayerNorm only where their ids are given, so plain BERT. Their
tables are not read; `to_hf` writes the model back with enable_shape and enable_pronunciation false. Heads:
RoCBertForMaskedLM, the sequence and token classifiers, and RoCBertModel as an embedding model; refused: is_decoder
(RoCBertForCausalLM) and cross-attention."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .bert import encoder_rules, head_rules
from .bert import from_config as bert_hf
from .bert import to_config as bert_config
from .hf import FAMILIES, Family
from .mapping import SPLITS, Rule

RULES = encoder_rules("roc_bert", "cls.predictions", "transform.dense", "transform.LayerNorm", "bias")
HEADS = head_rules("roc_bert.pooler.dense", "classifier", "classifier")
# the decoder's bias is cls.predictions.bias again, and its weight (older files store it tied) the embedding again
IGNORE = (r"^cls\.predictions\.decoder\.(bias|weight)$", r"embeddings\.position_ids$",
          r"^(roc_bert\.)?embeddings\.(shape|pronunciation)_embed\.weight$")
# map_inputs_layer.weight (d, d + shape + pronunciation widths): the word embeddings' columns, first in the concat
SPLITS["word_columns"] = (lambda t, cfg: t[:, :cfg.embed_width], lambda t, cfg: t)


def more_rules(cfg: ModelConfig) -> list[Rule]:
    if not cfg.token_proj:
        return []
    layer = "roc_bert.embeddings.map_inputs_layer"
    return [Rule.of(f"{layer}.weight", "token_proj.weight", "word_columns"),
            Rule.of(f"{layer}.bias", "token_proj.bias")]


def to_config(hf: dict) -> ModelConfig:
    if hf.get("is_decoder", False) or hf.get("add_cross_attention", False):
        raise LlmarchError("roc_bert with is_decoder or add_cross_attention (RoCBertForCausalLM) is not supported")
    return bert_config(hf).replace(name=hf.get("_name_or_path") or "roc_bert", hf_model_type="roc_bert",
                                   token_proj=bool(hf.get("concat_input", True)))


def needs(cfg: ModelConfig) -> str | None:
    if cfg.causal or cfg.norm_placement != "post" or not cfg.embed_norm or cfg.embed_width != cfg.d_model \
            or cfg.positions != "learned" or cfg.position_offset:
        return "BERT's bidirectional post-norm encoder with learned positions from 0 and an embedding LayerNorm"
    return None


def from_config(cfg: ModelConfig) -> dict:
    # the shape and pronunciation tables transformers builds anyway, left unread: one row of width one
    return {**bert_hf(cfg), "model_type": "roc_bert", "architectures": ["RoCBertForMaskedLM"],
            "concat_input": cfg.token_proj, "enable_shape": False, "enable_pronunciation": False,
            "shape_vocab_size": 1, "shape_embed_dim": 1, "pronunciation_vocab_size": 1, "pronunciation_embed_dim": 1,
            "pad_token_id": 0}


FAMILIES.register("roc_bert")(Family(RULES, to_config, from_config, IGNORE, heads={
    "classify": ("RoCBertForSequenceClassification", HEADS["classify"]),
    "tokens": ("RoCBertForTokenClassification", HEADS["tokens"])}, base_prefix="roc_bert.", needs=needs,
    more_rules=more_rules))
