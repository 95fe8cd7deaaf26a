"""Marian (`model_type: marian`): the original Transformer's layout (Vaswani et al. 2017) as transformers
holds it: BART's post-norm stacks and names, with fixed sinusoidal positions (sines in the first half of
each vector, cosines in the second; not stored in the checkpoint), no embedding norm, embeddings scaled by
sqrt(d_model) when `scale_embedding`, a shared vocabulary tied to the head, and a logits bias."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .bart import seq2seq_rules, shared_fields, shared_hf
from .hf import FAMILIES, Family


def to_config(hf: dict) -> ModelConfig:
    if not hf.get("share_encoder_decoder_embeddings", True) or hf.get("decoder_vocab_size",
                                                                      hf["vocab_size"]) != hf["vocab_size"]:
        raise LlmarchError("Marian checkpoints with separate source and target vocabularies are not supported")
    fields = shared_fields(hf)
    fields.update(pad_id=hf.get("pad_token_id", 0), eos_id=hf.get("eos_token_id", 0),
                  decoder_start_id=hf.get("decoder_start_token_id", hf.get("pad_token_id", 0)))
    return ModelConfig(**fields, positions="sinusoidal_halves", context_length=hf.get("max_position_embeddings", 512))


def from_config(cfg: ModelConfig) -> dict:
    if cfg.positions != "sinusoidal_halves" or cfg.embed_norm:
        raise LlmarchError("model_type marian needs positions sinusoidal_halves and no embed_norm")
    return dict(shared_hf(cfg, "marian", "MarianMTModel"), max_position_embeddings=cfg.context_length,
                share_encoder_decoder_embeddings=True, decoder_vocab_size=cfg.vocab_size)


IGNORE = (r"^model\.(encoder|decoder)\.embed_tokens\.weight$", r"embed_positions\.weight$")
FAMILIES.register("marian")(Family(seq2seq_rules(learned_positions=False), to_config, from_config, IGNORE))
