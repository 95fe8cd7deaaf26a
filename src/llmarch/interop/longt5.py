"""LongT5 (`model_type: longt5`; Guo et al. 2022, "LongT5: Efficient Text-To-Text Transformer for Long Sequences"):
T5's model whose encoder attends locally (§3.1.1): each token sees the keys within local_radius of it on either
side, with T5's relative bias from block 0's table, our `local` attention kind with sliding_window = local_radius +
1 on the encoder's layers (layer type `local_attention`); the decoder is T5's. transformers computes it blockwise
(blocks of local_radius + 1, each query over its own and the two neighbouring blocks, keys farther than local_radius
masked): the same scores. As UMT5's, LongT5Config sets scale_decoder_outputs from tie_word_embeddings (where
config.json has none) and then forces the head tied: llmarch rescales as scale_decoder_outputs says and ties the
head where the checkpoint stores no lm_head.weight. Transient-global attention (encoder_attention_type
'transient-global', §3.1.2: each token also attends to per-block summaries of the whole input) is not implemented
and refused."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .mapping import Rule
from .t5 import IGNORE, stack_rules, t5_fields, to_config as t5_config

LOCAL = "local_attention"
RULES = [Rule.of("shared.weight", "embed.weight"), *stack_rules("encoder", attn="LocalSelfAttention"),
         *stack_rules("decoder"), Rule.of("lm_head.weight", "lm_head.weight")]


def to_config(hf: dict) -> ModelConfig:
    kind = hf.get("encoder_attention_type", "local")
    if kind != "local":
        raise LlmarchError(f"longt5 with encoder_attention_type {kind!r} is not supported (local attention only)")
    cfg = t5_config(hf)
    n, n_dec = cfg.n_layers, cfg.n_decoder_layers
    return cfg.replace(name=hf.get("_name_or_path") or "longt5", hf_model_type="longt5",
                       layer_types=[LOCAL] * n + ["full_attention"] * n_dec,
                       layer_overrides={LOCAL: {"attention": "local",
                                                "sliding_window": hf.get("local_radius", 127) + 1}})


def from_config(cfg: ModelConfig) -> dict:
    enc, dec = cfg.stack_config("encoder"), cfg.stack_config("decoder")
    kinds = {enc.for_layer(i).attention for i in range(enc.n_layers)}
    windows = {enc.for_layer(i).sliding_window for i in range(enc.n_layers)}
    if kinds != {"local"} or len(windows) != 1 or any(dec.for_layer(i).attention != "full"
                                                      for i in range(dec.n_layers)):
        raise LlmarchError("model_type longt5 needs local attention with one window on every encoder layer and full "
                           "attention in the decoder")
    fields = t5_fields(cfg.replace(layer_types=None, layer_overrides=None))
    return {**fields, "model_type": "longt5", "architectures": ["LongT5ForConditionalGeneration"],
            "encoder_attention_type": "local", "local_radius": windows.pop() - 1}


FAMILIES.register("longt5")(Family(RULES, to_config, from_config, IGNORE, tied_by_checkpoint=True))
