"""BlenderbotSmall (`model_type: blenderbot-small`; the 90M Blenderbot of Roller et al. 2021): BART's post-norm
layout and names (bart.py) with learned positions counted from 0 (no offset) and a LayerNorm over the embeddings of
each stack, placed apart in the two: the encoder normalises the sum LN(e + p), as BART, while the decoder normalises
the token embeddings alone and adds the positions after, LN(e) + p (decoder_embed_norm_first), as ParlAI's
decoder does. Shared embedding tied to the head, a logits bias; pad 0, bos 1 (the decoder's start), eos 2."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .bart import IGNORE, seq2seq_rules, shared_fields, shared_hf
from .hf import FAMILIES, Family


def to_config(hf: dict) -> ModelConfig:
    fields = shared_fields(hf)
    fields.update(pad_id=hf.get("pad_token_id", 0), decoder_start_id=hf.get("decoder_start_token_id", 1))
    return ModelConfig(**fields, positions="learned", embed_norm=True, decoder_embed_norm_first=True,
                       context_length=hf.get("max_position_embeddings", 512))


def from_config(cfg: ModelConfig) -> dict:
    if cfg.positions != "learned" or cfg.position_offset or not cfg.decoder_embed_norm_first or not cfg.head_bias:
        raise LlmarchError("model_type blenderbot-small needs learned positions from 0, decoder_embed_norm_first "
                           "and head_bias")
    return dict(shared_hf(cfg, "blenderbot-small", "BlenderbotSmallForConditionalGeneration"),
                max_position_embeddings=cfg.context_length, bos_token_id=1)


FAMILIES.register("blenderbot-small")(Family(seq2seq_rules(learned_positions=True), to_config, from_config, IGNORE))
