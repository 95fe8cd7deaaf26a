"""RoBERTa (`model_type: roberta`): BERT's layout under `roberta.` with the MLM head in `lm_head`, one token
type, and positions counted from padding_idx + 1 (so `position_offset` = pad + 1 and the position table
holds context_length + offset rows). RobertaForSequenceClassification's head (dense -> tanh -> out_proj on
the first token) is our pooler + classifier under other names."""
from __future__ import annotations

from ..config import ModelConfig
from .bert import encoder_rules, head_rules
from .bert import from_config as bert_hf
from .bert import to_config as bert_config
from .hf import FAMILIES, Family

RULES = encoder_rules("roberta", "lm_head", "dense", "layer_norm", "bias")
HEADS = head_rules("classifier.dense", "classifier.out_proj", "classifier")
IGNORE = (r"^lm_head\.decoder\.bias$", r"embeddings\.position_ids$")


def to_config(hf: dict) -> ModelConfig:
    offset = hf.get("pad_token_id", 1) + 1
    cfg = bert_config({**hf, "type_vocab_size": hf.get("type_vocab_size", 1)})
    return cfg.replace(name=hf.get("_name_or_path") or "roberta", hf_model_type="roberta", position_offset=offset,
                       context_length=hf.get("max_position_embeddings", 514) - offset)


def from_config(cfg: ModelConfig) -> dict:
    return {**bert_hf(cfg), "model_type": "roberta", "architectures": ["RobertaForMaskedLM"],
            "pad_token_id": cfg.position_offset - 1,
            "max_position_embeddings": cfg.context_length + cfg.position_offset}


FAMILIES.register("roberta")(Family(RULES, to_config, from_config, IGNORE, heads={
    "classify": ("RobertaForSequenceClassification", HEADS["classify"]),
    "tokens": ("RobertaForTokenClassification", HEADS["tokens"])}))
