"""LongT5 (`model_type: longt5`; Guo et al. 2022, "LongT5: Efficient Text-To-Text Transformer for Long Sequences"):
T5's model whose encoder attends locally (§3.1.1, encoder_attention_type 'local'): each token sees the keys within
local_radius of it on either side, with T5's relative bias from block 0's table, our `local` attention kind with
sliding_window = local_radius + 1 on the encoder's layers (layer type `local_attention`); or also, in the same
softmax, one global token per block of global_block_size tokens (§3.1.2, 'transient-global': our
`transient_global` kind, each layer with its own global_input_layer_norm, block 0 holding the second bias table
over global-block offsets, global_relative_attention_bias). The decoder is T5's. transformers computes the local
part blockwise (blocks of local_radius + 1, each query over its own and the two neighbouring blocks, keys farther
than local_radius masked): the same scores. As UMT5's, LongT5Config sets scale_decoder_outputs from
tie_word_embeddings (where config.json has none) and then forces the head tied: llmarch rescales as
scale_decoder_outputs says and ties the head where the checkpoint stores no lm_head.weight."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .mapping import Rule
from .t5 import IGNORE, stack_rules, t5_fields, to_config as t5_config

LOCAL = "local_attention"
# encoder_attention_type -> our attention kind, transformers' module name
KINDS = {"local": ("local", "LocalSelfAttention"),
         "transient-global": ("transient_global", "TransientGlobalSelfAttention")}
RULES = [Rule.of("shared.weight", "embed.weight"), *stack_rules("decoder"), Rule.of("lm_head.weight", "lm_head.weight")]


def encoder_rules(cfg: ModelConfig) -> list[Rule]:
    """The encoder's rules: its attention module's name follows its kind; transient-global adds its norms and table."""
    kind = _encoder_kind(cfg)
    module = next(name for ours, name in KINDS.values() if ours == kind)
    rules = stack_rules("encoder", attn=module)
    if kind == "transient_global":
        hf = f"encoder.block.{{i}}.layer.0.{module}."
        rules += [Rule.of(hf + "global_input_layer_norm.weight", "encoder.blocks.{i}.attn.global_norm.weight"),
                  Rule.of(f"encoder.block.0.layer.0.{module}.global_relative_attention_bias.weight",
                          "encoder.positions.global_weight")]
    return rules


def _encoder_kind(cfg: ModelConfig) -> str | None:
    """The encoder's one attention kind, or None where its layers differ."""
    enc = cfg.stack_config("encoder")
    kinds = {enc.for_layer(i).attention for i in range(enc.n_layers)}
    return kinds.pop() if len(kinds) == 1 else None


def to_config(hf: dict) -> ModelConfig:
    kind = hf.get("encoder_attention_type", "local")
    if kind not in KINDS:
        raise LlmarchError(f"longt5 with encoder_attention_type {kind!r} is not supported; supported: "
                           f"{', '.join(KINDS)}")
    cfg = t5_config(hf)
    n, n_dec = cfg.n_layers, cfg.n_decoder_layers
    return cfg.replace(name=hf.get("_name_or_path") or "longt5", hf_model_type="longt5",
                       global_block_size=hf.get("global_block_size", 16) if kind == "transient-global" else 0,
                       layer_types=[LOCAL] * n + ["full_attention"] * n_dec,
                       layer_overrides={LOCAL: {"attention": KINDS[kind][0],
                                                "sliding_window": hf.get("local_radius", 127) + 1}})


def from_config(cfg: ModelConfig) -> dict:
    enc, dec = cfg.stack_config("encoder"), cfg.stack_config("decoder")
    kind = _encoder_kind(cfg)
    windows = {enc.for_layer(i).sliding_window for i in range(enc.n_layers)}
    if kind not in ("local", "transient_global") or len(windows) != 1 or any(
            dec.for_layer(i).attention != "full" for i in range(dec.n_layers)):
        raise LlmarchError("model_type longt5 needs local or transient_global attention with one window on every "
                           "encoder layer and full attention in the decoder")
    fields = t5_fields(cfg.replace(layer_types=None, layer_overrides=None, global_block_size=0))
    theirs = next(name for name, (ours, _) in KINDS.items() if ours == kind)
    return {**fields, "model_type": "longt5", "architectures": ["LongT5ForConditionalGeneration"],
            "encoder_attention_type": theirs, "local_radius": windows.pop() - 1,
            "global_block_size": cfg.global_block_size or 16}


FAMILIES.register("longt5")(Family(RULES, to_config, from_config, IGNORE, tied_by_checkpoint=True,
                                   more_rules=encoder_rules))
