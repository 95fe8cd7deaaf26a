"""Blenderbot (`model_type: blenderbot`; Roller et al. 2021, "Recipes for building an open-domain chatbot"): ParlAI's
pre-norm Transformer under BART's names (bart.py): each sublayer reads LN(x) and adds to x, a LayerNorm after the
last block of each stack (`layer_norm`, our ln_final), learned positions counted from 0 (no offset, unlike BART's
2), no embedding norm, embeddings scaled by sqrt(d_model) when `scale_embedding`, the shared embedding tied to the
head, and a logits bias (`final_logits_bias`). Pad 0, bos 1 (the decoder's start), eos 2."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .bart import IGNORE, final_norm_rules, seq2seq_rules, shared_fields, shared_hf
from .hf import FAMILIES, Family


def to_config(hf: dict) -> ModelConfig:
    fields = shared_fields(hf)
    fields.update(norm_placement="pre", pad_id=hf.get("pad_token_id", 0), decoder_start_id=hf.get(
        "decoder_start_token_id", 1))
    return ModelConfig(**fields, positions="learned", context_length=hf.get("max_position_embeddings", 128))


def from_config(cfg: ModelConfig) -> dict:
    if cfg.positions != "learned" or cfg.position_offset or cfg.embed_norm or not cfg.head_bias:
        raise LlmarchError("model_type blenderbot needs learned positions from 0, no embed_norm and head_bias")
    return dict(shared_hf(cfg, "blenderbot", "BlenderbotForConditionalGeneration", "pre"),
                max_position_embeddings=cfg.context_length, bos_token_id=1)


FAMILIES.register("blenderbot")(Family(seq2seq_rules(learned_positions=True, embed_norm=False) + final_norm_rules(),
                                       to_config, from_config, IGNORE))
