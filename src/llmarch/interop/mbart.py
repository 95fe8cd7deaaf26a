"""mBART (`model_type: mbart`; Liu et al. 2020, "Multilingual Denoising Pre-training for Neural Machine
Translation"; mBART-50, Tang et al. 2020): BART's layout and names (bart.py) made pre-norm, as fairseq's
`--encoder-normalize-before`: each sublayer reads LN(x) and adds to x, a LayerNorm after the last block of each
stack (`model.{encoder,decoder}.layer_norm`, our ln_final), beside BART's layernorm_embedding, learned positions
offset by 2 and token embeddings scaled by sqrt(d_model) (scale_embedding, true in the published checkpoints).
Which language a decoder writes is a generation setting, not the model's: mBART-large-cc25 starts the decoder
from the target language's code (generate's decoder_start_id), mBART-50 starts from eos and forces the code as the
first new token (forced_bos_id); both as transformers' generate given the same settings."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .bart import IGNORE, final_norm_rules, seq2seq_rules, shared_fields, shared_hf
from .hf import FAMILIES, Family


def to_config(hf: dict) -> ModelConfig:
    fields = shared_fields(hf)
    start = hf.get("decoder_start_token_id")  # None in MBartConfig: transformers' generate starts from bos then
    fields.update(norm_placement="pre", decoder_start_id=hf.get("bos_token_id", 0) if start is None else start)
    return ModelConfig(**fields, positions="learned", position_offset=2, embed_norm=True,
                       context_length=hf.get("max_position_embeddings", 1024))


def from_config(cfg: ModelConfig) -> dict:
    if cfg.positions != "learned" or cfg.position_offset != 2 or not cfg.embed_norm:
        raise LlmarchError("model_type mbart needs learned positions with position_offset 2 and embed_norm")
    return dict(shared_hf(cfg, "mbart", "MBartForConditionalGeneration", "pre"),
                max_position_embeddings=cfg.context_length, bos_token_id=0)


FAMILIES.register("mbart")(Family(seq2seq_rules(learned_positions=True) + final_norm_rules(), to_config, from_config,
                                  IGNORE))
