"""Whisper (`model_type: whisper`; Radford et al. 2022, "Robust Speech Recognition via Large-Scale Weak
Supervision"), as transformers' WhisperForConditionalGeneration holds it: an encoder over a log-mel spectrogram
(model.encoder.conv1, conv2 and the fixed sinusoids embed_positions: our encoder_input 'conv_stem',
layers/encoder_inputs.py), then pre-norm blocks and a final LayerNorm in each stack (mBART's layout, bart.py's
names), the decoder with learned positions from 0 (max_target_positions of them), the head (proj_out) tied to the
token embeddings and without a bias. Keys have no bias (k_proj, in self- and cross-attention): ours is read as zero,
and on export dropped, which changes nothing a model computes: a key bias b adds q.b to every score of a query, and
softmax is unchanged by a shift. transformers' Whisper never applies scale_embedding (its embed_scale is unused), so
neither does llmarch. The generation config (decoder prompt, suppressed tokens, timestamps, language detection) is no
part of the model: generate/transcribe.py applies it."""
from __future__ import annotations

import torch

from ..config import ModelConfig
from ..errors import LlmarchError
from .bart import final_norm_rules, shared_fields, shared_hf, stack_rules
from .hf import FAMILIES, Family
from .mapping import JOINS, Rule


def _join_no_key_bias(parts: list[torch.Tensor], cfg) -> torch.Tensor:
    """q and v biases -> our q|k|v bias; v alone -> our k|v bias (cross-attention): the keys' zero, before v's."""
    return torch.cat([*parts[:-1], torch.zeros_like(parts[-1]), parts[-1]])


def _split_no_key_bias(t: torch.Tensor, cfg) -> list[torch.Tensor]:
    *rest, _, v = t.chunk(len(t) // cfg.d_model)  # the keys' rows dropped: they shift no softmax
    return [*rest, v]


JOINS["no_key_bias"] = (_join_no_key_bias, _split_no_key_bias)


def _without_key_bias(rule: Rule) -> Rule:
    if rule.ours.endswith(("qkv_proj.bias", "kv_proj.bias")):
        return Rule(tuple(n for n in rule.hf if ".k_proj." not in n), rule.ours, "no_key_bias")
    return rule


_FRONT = [Rule.of(f"model.encoder.conv{n}.{w}", f"encoder_input.conv{n}.{w}") for n in (1, 2)
          for w in ("weight", "bias")] + [Rule.of("model.encoder.embed_positions.weight", "encoder_input.positions")]
RULES = [Rule.of("model.decoder.embed_tokens.weight", "embed.weight"), Rule.of("proj_out.weight", "lm_head.weight"),
         Rule.of("model.decoder.embed_positions.weight", "decoder.positions.weight"), *_FRONT,
         *map(_without_key_bias, stack_rules(learned_positions=False)), *final_norm_rules()]


def to_config(hf: dict) -> ModelConfig:
    """The encoder's frames and the decoder's tokens bound apart: max_source_positions (the encoder's positions,
    half its frames) and max_target_positions."""
    arch = (hf.get("architectures") or ["WhisperForConditionalGeneration"])[0]
    if arch in ("WhisperForCausalLM", "WhisperForAudioClassification"):
        raise LlmarchError(f"{arch} checkpoints are not supported (model_type whisper: WhisperForConditionalGeneration "
                           "only)")
    if hf.get("d_model", 0) % 2:
        raise LlmarchError(f"Whisper with an odd d_model ({hf['d_model']}) has no sinusoid table of its width")
    fields = shared_fields({**hf, "scale_embedding": False})
    fields.update(norm_placement="pre", pad_id=hf.get("pad_token_id", 50256), eos_id=hf.get("eos_token_id", 50256),
                  decoder_start_id=hf.get("decoder_start_token_id", 50257), tie_embeddings=True, head_bias=False)
    if not hf.get("tie_word_embeddings", True):
        raise LlmarchError("Whisper checkpoints with a head apart from the token embeddings (tie_word_embeddings "
                           "false) are not supported")
    return ModelConfig(**fields, encoder_input="conv_stem", input_channels=hf.get("num_mel_bins", 80),
                       positions="none", decoder_overrides={"positions": "learned"},
                       context_length=hf.get("max_source_positions", 1500),
                       decoder_context_length=hf.get("max_target_positions", 448))


def from_config(cfg: ModelConfig) -> dict:
    if cfg.encoder_input != "conv_stem" or (cfg.decoder_overrides or {}) != {"positions": "learned"} \
            or cfg.position_offset or cfg.embed_norm or cfg.embed_scale or cfg.head_bias or not cfg.tie_embeddings:
        raise LlmarchError("model_type whisper needs encoder_input conv_stem, the decoder's positions learned from 0 "
                           "(decoder_overrides), no embed_norm, embed_scale or head bias, and a tied head")
    return dict(shared_hf(cfg, "whisper", "WhisperForConditionalGeneration", "pre"), num_mel_bins=cfg.input_channels,
                max_source_positions=cfg.context_length,
                max_target_positions=cfg.decoder_context_length or cfg.context_length)


FAMILIES.register("whisper")(Family(RULES, to_config, from_config))
