"""BertGeneration (`model_type: bert-generation`; Rothe et al. 2020, "Leveraging Pre-trained Checkpoints for Sequence
Generation Tasks"): BERT's post-norm stack (bert.py's layout under `bert.`) with no token types and no pooler, as
the paper warm-starts encoders and decoders from BERT checkpoints. BertGenerationDecoder's head is a plain
projection onto the vocabulary tied to the word embeddings, with a bias (`lm_head.bias`; no transform); with
`is_decoder` its attention is causal (the decoder), without it bidirectional. BertGenerationEncoder (the body alone,
the encoder half of the paper's BERT2BERT models) reads as head `embed`. Refused: add_cross_attention (the decoder
of an encoder-decoder pair, which reads an encoder's output)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .bert import body_rules
from .bert import from_config as bert_hf
from .bert import to_config as bert_config
from .hf import FAMILIES, Family
from .mapping import Rule

RULES = [*body_rules("bert"), Rule.of("lm_head.bias", "lm_head.bias"),
         Rule.of("lm_head.decoder.weight", "lm_head.weight")]
IGNORE = (r"^lm_head\.decoder\.bias$", r"embeddings\.position_ids$")  # the decoder's bias is lm_head.bias again


def to_config(hf: dict) -> ModelConfig:
    if hf.get("add_cross_attention", False):
        raise LlmarchError("bert-generation with add_cross_attention (a decoder over an encoder's output) is not "
                           "supported")
    cfg = bert_config({**hf, "type_vocab_size": 0}).replace(
        name=hf.get("_name_or_path") or "bert-generation", hf_model_type="bert-generation", head_transform=False,
        causal=bool(hf.get("is_decoder", False)))
    if (hf.get("architectures") or [""])[0] == "BertGenerationEncoder":  # the body alone, its names without `bert.`
        return cfg.replace(head="embed", head_bias=False)
    return cfg


def needs(cfg: ModelConfig) -> str | None:
    if cfg.norm_placement != "post" or cfg.final_norm or not cfg.embed_norm or cfg.position_offset \
            or cfg.positions != "learned" or cfg.type_vocab_size or cfg.embed_width != cfg.d_model \
            or cfg.head == "lm" and (cfg.head_transform or not cfg.head_bias):
        return ("BERT's post-norm blocks, embedding LayerNorm and learned positions from 0, no token types, and an LM "
                "head without a transform, with a bias")
    return None


def from_config(cfg: ModelConfig) -> dict:
    out = {**bert_hf(cfg), "model_type": "bert-generation", "architectures": ["BertGenerationDecoder"],
           "is_decoder": cfg.causal}
    out.pop("type_vocab_size")
    return out


FAMILIES.register("bert-generation")(Family(RULES, to_config, from_config, IGNORE, base_prefix="bert.",
                                            needs=needs))
