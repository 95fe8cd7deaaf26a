"""PEGASUS (`model_type: pegasus`; Zhang et al. 2020, "PEGASUS: Pre-training with Extracted Gap-sentences for
Abstractive Summarization"): BART's names (bart.py) on a pre-norm Transformer as tensor2tensor builds it: each
sublayer reads LN(x) and adds to x, a LayerNorm after the last block of each stack (`layer_norm`, our ln_final),
Marian's fixed sinusoidal positions from 0 (sines in the first half of each vector, cosines in the second; stored
in some checkpoints, not read), no embedding norm, token embeddings scaled by sqrt(d_model) (scale_embedding), the
head tied to the shared embedding, and a logits bias. Pad 0, eos 1; the decoder starts from pad."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .bart import final_norm_rules, seq2seq_rules, shared_fields, shared_hf
from .hf import FAMILIES, Family


def to_config(hf: dict) -> ModelConfig:
    fields = shared_fields(hf)
    fields.update(norm_placement="pre", pad_id=hf.get("pad_token_id", 0), eos_id=hf.get("eos_token_id", 1),
                  decoder_start_id=hf.get("decoder_start_token_id", 0))
    return ModelConfig(**fields, positions="sinusoidal_halves", context_length=hf.get("max_position_embeddings", 1024))


def from_config(cfg: ModelConfig) -> dict:
    if cfg.positions != "sinusoidal_halves" or cfg.position_offset or cfg.embed_norm or not cfg.head_bias:
        raise LlmarchError("model_type pegasus needs positions sinusoidal_halves from 0, no embed_norm and head_bias")
    return dict(shared_hf(cfg, "pegasus", "PegasusForConditionalGeneration", "pre"),
                max_position_embeddings=cfg.context_length)


IGNORE = (r"^model\.(encoder|decoder)\.embed_tokens\.weight$", r"embed_positions\.weight$")
FAMILIES.register("pegasus")(Family(seq2seq_rules(learned_positions=False) + final_norm_rules(), to_config,
                                    from_config, IGNORE))
