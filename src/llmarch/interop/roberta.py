"""RoBERTa (`model_type: roberta`): BERT's layout under `roberta.` with the MLM head in `lm_head`, one token
type, and positions counted from padding_idx + 1 (so `position_offset` = pad + 1 and the position table
holds context_length + offset rows). RobertaForSequenceClassification's head (dense -> tanh -> out_proj on
the first token) is our pooler + classifier under other names. With `is_decoder` (RobertaForCausalLM) the
stack's attention is causal and the MLM head is the LM head. XLM-RoBERTa (`xlm-roberta`) is the same model."""
from __future__ import annotations

from functools import partial

from ..config import ModelConfig
from ..errors import LlmarchError
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
    # RobertaLMHead applies exact GELU whatever hidden_act the blocks use (BERT's head follows hidden_act)
    return cfg.replace(name=hf.get("_name_or_path") or hf["model_type"], hf_model_type=hf["model_type"],
                       position_offset=offset, context_length=hf.get("max_position_embeddings", 514) - offset,
                       head_act=None if cfg.ffn == "gelu" else "gelu")


def from_config(cfg: ModelConfig, model_type: str = "roberta", prefix: str = "Roberta") -> dict:
    if cfg.head == "lm" and (cfg.head_act or cfg.ffn) != "gelu":
        raise LlmarchError(f"{model_type}'s MLM head applies GELU whatever hidden_act says: a head activation "
                           f"{cfg.head_act or cfg.ffn!r} cannot be written")
    head = "ForCausalLM" if cfg.causal else "ForMaskedLM"  # is_decoder (bert_hf writes it)
    return {**bert_hf(cfg.replace(head_act=None)), "model_type": model_type, "architectures": [prefix + head],
            "pad_token_id": cfg.position_offset - 1,
            "max_position_embeddings": cfg.context_length + cfg.position_offset}


def family(model_type: str, prefix: str, root: str = "roberta") -> Family:
    """RoBERTa's layout under another model_type, architecture prefix and base-model name `root` (XLM-RoBERTa and
    CamemBERT: the same classes under `roberta.`; data2vec-text: under `data2vec_text.`)."""
    rules = RULES if root == "roberta" else encoder_rules(root, "lm_head", "dense", "layer_norm", "bias")
    return Family(rules, to_config, partial(from_config, model_type=model_type, prefix=prefix), IGNORE, heads={
        "classify": (f"{prefix}ForSequenceClassification", HEADS["classify"]),
        "tokens": (f"{prefix}ForTokenClassification", HEADS["tokens"])}, base_prefix=f"{root}.")


FAMILIES.register("roberta")(family("roberta", "Roberta"))
# XLM-RoBERTa (Conneau et al. 2020): RoBERTa's model with a 250k SentencePiece vocabulary (XLM-R, and the
# multilingual encoders fine-tuned from it)
FAMILIES.register("xlm-roberta")(family("xlm-roberta", "XLMRoberta"))
