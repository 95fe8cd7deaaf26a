"""M2M-100 (`model_type: m2m_100`; Fan et al. 2021, "Beyond English-Centric Multilingual Machine Translation") and
the dense NLLB-200 checkpoints (NLLB Team 2022, the same model_type): fairseq's pre-norm Transformer under BART's
names (bart.py): each sublayer reads LN(x) and adds to x, a LayerNorm after the last block of each stack
(`layer_norm`, our ln_final), token embeddings scaled by sqrt(d_model), no embedding norm, and fixed sinusoidal
positions in fairseq's layout (sines, then cosines, at frequencies 10000^(-i/(d/2 - 1)): positions
sinusoidal_fairseq) counted from padding_idx + 1 (position_offset = pad + 1), not stored in the checkpoint. The
head is tied to the shared embedding and has no bias. The target language is a generation setting: the decoder
starts from eos and the language's code is forced as the first new token (generate's forced_bos_id).
transformers numbers a padding token's position as padding_idx itself (a zero row) and the others by their count
of non-padding tokens; llmarch numbers real tokens the same way, so right- or left-padded rows agree on every real
token, and a decoder that emits the padding id mid-sequence is the one place the two would part."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .bart import IGNORE, final_norm_rules, seq2seq_rules, shared_fields, shared_hf
from .hf import FAMILIES, Family


def to_config(hf: dict) -> ModelConfig:
    fields = shared_fields(hf)
    fields.update(norm_placement="pre", head_bias=False, embed_scale=bool(hf.get("scale_embedding", True)))
    return ModelConfig(**fields, positions="sinusoidal_fairseq", position_offset=fields["pad_id"] + 1,
                       context_length=hf.get("max_position_embeddings", 1024))


def from_config(cfg: ModelConfig) -> dict:
    if (cfg.positions != "sinusoidal_fairseq" or cfg.position_offset != cfg.pad_id + 1 or cfg.embed_norm
            or cfg.head_bias):
        raise LlmarchError("model_type m2m_100 needs positions sinusoidal_fairseq with position_offset pad_id + 1, "
                           "no embed_norm and no head_bias")
    return dict(shared_hf(cfg, "m2m_100", "M2M100ForConditionalGeneration", "pre"),
                max_position_embeddings=cfg.context_length, bos_token_id=0)


FAMILIES.register("m2m_100")(Family(seq2seq_rules(learned_positions=False) + final_norm_rules(), to_config,
                                    from_config, IGNORE))
