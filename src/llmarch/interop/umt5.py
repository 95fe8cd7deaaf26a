"""UMT5 (`model_type: umt5`; Chung et al. 2023, "UniMax: Fairer and More Effective Language Sampling for Large-Scale
Multilingual Pretraining"): mT5's model (T5 v1.1 blocks over a 256k vocabulary) with a relative position bias table
in every self-attention layer of both stacks instead of one shared table stored in block 0
(relative_bias_per_layer). Cross-attention has none, as in T5. Like mT5, the head is tied exactly where the
checkpoint stores no lm_head.weight (UMT5Config forces tie_word_embeddings true); the decoder output is rescaled by
d_model^-0.5 where scale_decoder_outputs says so (by default: where the config did not ask for an untied head).
UMT5EncoderModel (the encoder alone) reads as an encoder-only model, as T5EncoderModel does (t5.py)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .mapping import Rule
from .t5 import IGNORE, as_encoder, encoder_fields, encoder_only, encoder_only_rules, stack_rules
from .t5 import t5_fields, to_config as t5_config


def umt5_stack_rules(part: str) -> list[Rule]:
    """T5's rules for one stack, the block-0 bias table replaced by one table per block."""
    bias = "SelfAttention.relative_attention_bias.weight"
    return [r for r in stack_rules(part) if not r.hf[0].endswith(bias)] + [
        Rule.of(f"{part}.block.{{i}}.layer.0.{bias}", f"{part}.positions.layers.{{i}}")]


RULES = [Rule.of("shared.weight", "embed.weight"), *umt5_stack_rules("encoder"), *umt5_stack_rules("decoder"),
         Rule.of("lm_head.weight", "lm_head.weight")]
ENCODER_RULES = encoder_only_rules(RULES)


def to_config(hf: dict) -> ModelConfig:
    scale = hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True) is not False)
    cfg = t5_config({**hf, "feed_forward_proj": hf.get("feed_forward_proj", "gated-gelu")}).replace(
        name=hf.get("_name_or_path") or "umt5", hf_model_type="umt5", relative_bias_per_layer=True, head_scale=scale)
    return as_encoder(cfg) if encoder_only(hf, "UMT5EncoderModel") else cfg


def from_config(cfg: ModelConfig) -> dict:
    if not cfg.relative_bias_per_layer:
        raise LlmarchError("model_type umt5 needs relative_bias_per_layer=True (a bias table in every layer)")
    fields = {**t5_fields(cfg), "model_type": "umt5", "architectures": ["UMT5ForConditionalGeneration"]}
    return fields if cfg.n_decoder_layers else encoder_fields(cfg, fields, "UMT5EncoderModel")


FAMILIES.register("umt5")(Family(RULES + ENCODER_RULES, to_config, from_config, IGNORE, tied_by_checkpoint=True,
                                 heads={"embed": ("UMT5EncoderModel", [])}))
