"""PLBART (`model_type: plbart`; Ahmad et al. 2021, "Unified Pre-training for Program Understanding and
Generation"): BART's post-norm layout and names exactly (bart.py: learned positions offset by 2, a LayerNorm over
the embeddings of each stack, the tied shared embedding and a logits bias), with token embeddings scaled by
sqrt(d_model) (`scale_embedding`, true by default). As mBART, its config names no decoder_start_token_id:
transformers' generate then starts the decoder from bos, and so does llmarch (decoder_start_id)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .bart import IGNORE, seq2seq_rules, shared_fields, shared_hf
from .hf import FAMILIES, Family


def to_config(hf: dict) -> ModelConfig:
    fields = shared_fields(hf)
    start = hf.get("decoder_start_token_id")
    fields.update(embed_scale=bool(hf.get("scale_embedding", True)),
                  decoder_start_id=hf.get("bos_token_id", 0) if start is None else start)
    return ModelConfig(**fields, positions="learned", position_offset=2, embed_norm=True,
                       context_length=hf.get("max_position_embeddings", 1024))


def from_config(cfg: ModelConfig) -> dict:
    if cfg.positions != "learned" or cfg.position_offset != 2 or not cfg.embed_norm:
        raise LlmarchError("model_type plbart needs learned positions with position_offset 2 and embed_norm")
    return dict(shared_hf(cfg, "plbart", "PLBartForConditionalGeneration"), max_position_embeddings=cfg.context_length,
                bos_token_id=0)


FAMILIES.register("plbart")(Family(seq2seq_rules(learned_positions=True), to_config, from_config, IGNORE))
