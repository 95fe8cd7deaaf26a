"""RoFormer (`model_type: roformer`; Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary Position
Embedding"): BERT's post-norm encoder (bert.py's layout under `roformer.`) with no position table: RoPE over each
head's whole width at base 10000, its pairs the adjacent dims (2j, 2j + 1) (eq. 34 as written; the `rope_pairs`
layout reorders q and k rows, biases too, to llmarch's half-split pairs). The sinusoidal table transformers keeps
(encoder.embed_positions) is derived, not read. Embeddings of their own width (`embedding_size`: embed_dim,
projected by `embeddings_project`, as ELECTRA). Heads: the MLM head (BERT's, its transform back at the embedding
width), RoFormerClassificationHead (dense -> hidden_act -> out_proj on the first token: the pooler with pooler_act
= hidden_act) and a per-token classifier. Refused: rotary_value (values rotated too), is_decoder (the causal LM),
a hidden_act other than gelu or relu (the classification head applies it beside the FFN's)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .bert import encoder_rules, head_rules
from .bert import from_config as bert_hf
from .bert import to_config as bert_config
from .hf import FAMILIES, Family
from .mapping import Rule, with_rope_pairs

_W = ("weight", "bias")
RULES = with_rope_pairs([
    *encoder_rules("roformer", "cls.predictions", "transform.dense", "transform.LayerNorm", "bias"),
    *[Rule.of(f"roformer.embeddings_project.{w}", f"embed_proj.{w}") for w in _W]])
HEADS = head_rules("classifier.dense", "classifier.out_proj", "classifier")
IGNORE = (r"^cls\.predictions\.decoder\.bias$", r"encoder\.embed_positions\.weight$")


def to_config(hf: dict) -> ModelConfig:
    if hf.get("rotary_value", False) or hf.get("is_decoder", False):
        raise LlmarchError("RoFormer with rotary_value or is_decoder is not supported (the encoder, keys and queries "
                           "rotated)")
    act = hf.get("hidden_act", "gelu")
    if act not in ("gelu", "relu"):
        raise LlmarchError(f"RoFormer with hidden_act {act!r} is not supported (gelu or relu)")
    cfg = bert_config(hf)
    return cfg.replace(name=hf.get("_name_or_path") or "roformer", hf_model_type="roformer", positions="rope",
                       rope_theta=10000.0, pooler_act=act, embed_dim=hf.get("embedding_size") or cfg.d_model)


def needs(cfg: ModelConfig) -> str | None:
    if cfg.positions != "rope" or cfg.rope_theta != 10000.0 or cfg.rotary_dim != cfg.head_dim or \
            cfg.rope_scaling != "none" or cfg.ffn not in ("gelu", "relu") or cfg.pooler_act != cfg.ffn:
        return "RoPE over whole heads at base 10000, unscaled, and ffn and pooler_act both gelu or both relu"
    return None


def from_config(cfg: ModelConfig) -> dict:
    return {**bert_hf(cfg), "model_type": "roformer", "architectures": ["RoFormerForMaskedLM"],
            "embedding_size": cfg.embed_width, "rotary_value": False}


FAMILIES.register("roformer")(Family(RULES, to_config, from_config, IGNORE, heads={
    "classify": ("RoFormerForSequenceClassification", HEADS["classify"]),
    "tokens": ("RoFormerForTokenClassification", HEADS["tokens"])}, base_prefix="roformer.", needs=needs))
