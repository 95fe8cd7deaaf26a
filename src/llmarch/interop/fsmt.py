"""FSMT (`model_type: fsmt`; Ng et al. 2019, "Facebook FAIR's WMT19 News Translation Task Submission"): fairseq's
post-norm Transformer (Vaswani et al. 2017) under BART's layer names (bart.py's stack_rules), with two vocabularies:
the encoder reads a source table of its own (`model.encoder.embed_tokens`, src_vocab_size rows: encoder_embed,
encoder_vocab_size), the decoder a target table (tgt_vocab_size: vocab_size) and a separate output projection
(`model.decoder.output_projection`, no bias, no logits bias). tie_word_embeddings (possible only where the two
vocabularies are one) ties all three to the decoder's table. Token embeddings are scaled by sqrt(d_model); positions
are fairseq's fixed sinusoids (sinusoidal_fairseq) counted from padding_idx + 1 and not read from the checkpoint, as
M2M-100's (m2m_100.py); no embedding norm, no final norms; ReLU. The decoder starts from eos."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .bart import shared_fields, shared_hf, stack_rules
from .hf import FAMILIES, Family
from .mapping import Rule

RULES = [Rule.of("model.encoder.embed_tokens.weight", "encoder_embed.weight"),
         Rule.of("model.decoder.embed_tokens.weight", "embed.weight"),
         Rule.of("model.decoder.output_projection.weight", "lm_head.weight"), *stack_rules(learned_positions=False)]


def to_config(hf: dict) -> ModelConfig:
    src, tgt, tied = hf["src_vocab_size"], hf["tgt_vocab_size"], bool(hf.get("tie_word_embeddings", False))
    if tied and src != tgt:
        raise LlmarchError(f"FSMT with tie_word_embeddings needs src_vocab_size = tgt_vocab_size, got {src} and {tgt}")
    fields = shared_fields(dict(hf, vocab_size=tgt, tie_word_embeddings=tied))
    fields.update(head_bias=False, embed_scale=bool(hf.get("scale_embedding", True)), encoder_embed=not tied,
                  encoder_vocab_size=None if tied else src, decoder_start_id=hf.get("decoder_start_token_id", 2))
    return ModelConfig(**fields, positions="sinusoidal_fairseq", position_offset=fields["pad_id"] + 1,
                       context_length=hf.get("max_position_embeddings", 1024))


def from_config(cfg: ModelConfig) -> dict:
    if (cfg.positions != "sinusoidal_fairseq" or cfg.position_offset != cfg.pad_id + 1 or cfg.embed_norm
            or cfg.head_bias or cfg.encoder_embed == cfg.tie_embeddings):
        raise LlmarchError("model_type fsmt needs positions sinusoidal_fairseq with position_offset pad_id + 1, no "
                           "embed_norm, no head_bias, and either a tied head or an encoder table of its own")
    out = shared_hf(cfg, "fsmt", "FSMTForConditionalGeneration")
    del out["vocab_size"]
    return dict(out, src_vocab_size=cfg.encoder_vocab_size or cfg.vocab_size, tgt_vocab_size=cfg.vocab_size,
                langs=["src", "tgt"], max_position_embeddings=cfg.context_length, bos_token_id=0)


IGNORE = (r"embed_positions\.weight$", r"^model\.encoder\.embed_tokens\.weight$",
          r"^model\.decoder\.output_projection\.weight$")  # the last two: stored again where tied
FAMILIES.register("fsmt")(Family(RULES, to_config, from_config, IGNORE))
