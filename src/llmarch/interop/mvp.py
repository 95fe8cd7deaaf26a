"""MVP (`model_type: mvp`; Tang et al. 2023, "MVP: Multi-task Supervised Pre-training for Natural Language
Generation"): BART-large's layout and names exactly (bart.py: post-norm, learned positions offset by 2, a LayerNorm
over the embeddings of each stack, the tied shared embedding and a logits bias). Its lightweight tuning
(`use_prompt`: a prefix of prompt_length keys and values per layer, made by an MLP from a prompt table, prepended in
every self- and cross-attention; Li & Liang 2021) is refused: llmarch's attention has no prefix keys."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .bart import IGNORE, seq2seq_rules, shared_fields, shared_hf
from .hf import FAMILIES, Family


def to_config(hf: dict) -> ModelConfig:
    if hf.get("use_prompt"):
        raise LlmarchError("MVP checkpoints with use_prompt (layer-wise prompts, lightweight tuning) are not supported")
    return ModelConfig(**shared_fields(hf), positions="learned", position_offset=2, embed_norm=True,
                       context_length=hf.get("max_position_embeddings", 1024))


def from_config(cfg: ModelConfig) -> dict:
    if cfg.positions != "learned" or cfg.position_offset != 2 or not cfg.embed_norm:
        raise LlmarchError("model_type mvp needs learned positions with position_offset 2 and embed_norm")
    return dict(shared_hf(cfg, "mvp", "MvpForConditionalGeneration"), max_position_embeddings=cfg.context_length,
                bos_token_id=0, use_prompt=False)


FAMILIES.register("mvp")(Family(seq2seq_rules(learned_positions=True), to_config, from_config, IGNORE))
