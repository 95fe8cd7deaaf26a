"""PEGASUS-X (`model_type: pegasus_x`; Phang et al. 2022, "Investigating Efficiently Extending Transformers for Long
Input Summarization"): PEGASUS's pre-norm layout under BART's names (bart.py: each sublayer reads LN(x) and adds to
x, a LayerNorm after the last block of each stack) with no attention biases (the FFNs and norms keep theirs), fixed
sinusoids from 0 in fairseq's layout (sines then cosines at 10000^(-i/(d/2 - 1))), embeddings scaled by
sqrt(d_model), the head tied to the shared embedding and no logits bias. Its encoder prepends num_global_tokens
learned global tokens (`embed_global`: global_tokens) with their own pre-attention norm in every layer
(`global_self_attn_layer_norm`: ln1_global) and attends global-locally (our `global_local` kind): each token sees
the global tokens and its block of block_size tokens, every other layer's blocks staggered by block_size / 2
(stagger_local_blocks: local_block_offset on the odd layers), and the global tokens see everything. transformers
pads the source to a multiple of block_size and masks the padding, so real tokens see the same keys."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .bart import final_norm_rules, shared_fields, shared_hf, stack_rules
from .hf import FAMILIES, Family
from .mapping import Rule

EVEN, ODD = "global_local", "global_local_staggered"
RULES = [Rule.of("model.shared.weight", "embed.weight"), Rule.of("lm_head.weight", "lm_head.weight"),
         Rule.of("model.encoder.embed_global.weight", "encoder.global_embed"),
         *stack_rules(learned_positions=False), *final_norm_rules(),
         *[Rule.of(f"model.encoder.layers.{{i}}.global_self_attn_layer_norm.{w}",
                   f"encoder.blocks.{{i}}.ln1_global.{w}") for w in ("weight", "bias")]]


def to_config(hf: dict) -> ModelConfig:
    fields = shared_fields(hf)
    n, n_dec, size = fields["n_layers"], fields["n_decoder_layers"], hf.get("block_size", 512)
    stagger = hf.get("stagger_local_blocks", True)
    if size < 2 or (stagger and size % 2):
        raise LlmarchError(f"PEGASUS-X with block_size={size}: staggered blocks need an even block_size >= 2")
    fields.update(norm_placement="pre", head_bias=False, qkv_bias=False, o_bias=False,
                  pad_id=hf.get("pad_token_id", 0), eos_id=hf.get("eos_token_id", 1),
                  decoder_start_id=hf.get("decoder_start_token_id", 0))
    types = [ODD if i % 2 and stagger else EVEN for i in range(n)] + ["full_attention"] * n_dec
    return ModelConfig(**fields, positions="sinusoidal_fairseq",
                       context_length=hf.get("max_position_embeddings", 16384),
                       global_tokens=hf.get("num_global_tokens", 32), local_block_size=size, layer_types=types,
                       layer_overrides={EVEN: {"attention": "global_local"},
                                        ODD: {"attention": "global_local", "local_block_offset": size // 2}})


def from_config(cfg: ModelConfig) -> dict:
    enc, dec = cfg.stack_config("encoder"), cfg.stack_config("decoder")
    offsets = [(enc.for_layer(i).attention, enc.for_layer(i).local_block_offset) for i in range(enc.n_layers)]
    stagger = [("global_local", cfg.local_block_size // 2 if i % 2 else 0) for i in range(enc.n_layers)]
    plain = [("global_local", 0)] * enc.n_layers
    if (offsets not in (stagger, plain) or any(dec.for_layer(i).attention != "full" for i in range(dec.n_layers))
            or cfg.positions != "sinusoidal_fairseq" or cfg.position_offset or cfg.embed_norm or cfg.head_bias
            or cfg.qkv_bias or cfg.o_bias):
        raise LlmarchError("model_type pegasus_x needs global_local attention in the encoder (every other layer's "
                           "blocks staggered by half a block, or none), full attention in the decoder, positions "
                           "sinusoidal_fairseq from 0, no embed_norm, no head_bias and no attention biases")
    out = shared_hf(cfg.replace(layer_types=None, layer_overrides=None, global_tokens=0), "pegasus_x",
                    "PegasusXForConditionalGeneration", "pre")
    return dict(out, max_position_embeddings=cfg.context_length, num_global_tokens=cfg.global_tokens,
                block_size=cfg.local_block_size, stagger_local_blocks=offsets == stagger and enc.n_layers > 1)


IGNORE = (r"^model\.(encoder|decoder)\.embed_tokens\.weight$",)
FAMILIES.register("pegasus_x")(Family(RULES, to_config, from_config, IGNORE))
