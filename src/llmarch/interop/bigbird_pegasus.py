"""BigBird-Pegasus (`model_type: bigbird_pegasus`; Zaheer et al. 2020, "Big Bird: Transformers for Longer
Sequences", §5 (summarization with a Pegasus encoder-decoder)): PEGASUS's pre-norm layout (pegasus.py: each sublayer
reads LN(x) and adds to x, a LayerNorm after the last block of each stack, here named `layernorm_embedding`) under
BART's names, with learned positions from 0 (no embedding norm), embeddings scaled by sqrt(d_model) (scale_embedding),
the head tied to the shared embedding and BART's logits bias. `use_bias` puts biases on every attention projection
(encoder, decoder and cross), the FFNs keep theirs. The encoder attends as BigBird does (`attention_type`
block_sparse: our `bigbird` kind, big_bird.py, with transformers' inference pattern and its full-attention fallback
for sources of at most (5 + 2r) b tokens; original_full: full attention), its projections named
`self_attn.self.{query,key,value}` and `self_attn.output`; the decoder attends fully. transformers pads the source to
a multiple of block_size and masks the padding, so real tokens see the same keys."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .bart import seq2seq_rules, shared_fields, shared_hf, stack_rules
from .hf import FAMILIES, Family
from .mapping import Rule

SPARSE = "block_sparse"
_KINDS = {"block_sparse": "bigbird", "original_full": "full"}
_ATTN = tuple(f"self_attn.{p}" for p in ("self.query", "self.key", "self.value", "output"))
RULES = [*seq2seq_rules(learned_positions=False)[:3],
         *stack_rules(learned_positions=True, embed_norm=False, encoder_attn=_ATTN),
         *[Rule.of(f"model.{part}.layernorm_embedding.{w}", f"{part}.ln_final.{w}") for part in ("encoder", "decoder")
           for w in ("weight", "bias")]]


def to_config(hf: dict) -> ModelConfig:
    kind = hf.get("attention_type", SPARSE)
    if kind not in _KINDS:
        raise LlmarchError(f"bigbird_pegasus: unknown attention_type {kind!r} (block_sparse or original_full)")
    fields = shared_fields({"activation_function": "gelu_new", **hf})
    bias = hf.get("use_bias", False)
    fields.update(norm_placement="pre", qkv_bias=bias, o_bias=bias, pad_id=hf.get("pad_token_id", 0),
                  eos_id=hf.get("eos_token_id", 1), decoder_start_id=hf.get("decoder_start_token_id", 2),
                  embed_scale=hf.get("scale_embedding", True))
    n, n_dec = fields["n_layers"], fields["n_decoder_layers"]
    return ModelConfig(**fields, positions="learned", context_length=hf.get("max_position_embeddings", 4096),
                       attention_block=hf.get("block_size", 64), random_blocks=hf.get("num_random_blocks", 3),
                       layer_types=[SPARSE] * n + ["full_attention"] * n_dec,
                       layer_overrides={SPARSE: {"attention": _KINDS[kind]}})


def from_config(cfg: ModelConfig) -> dict:
    enc, dec = cfg.stack_config("encoder"), cfg.stack_config("decoder")
    kinds = {enc.for_layer(i).attention for i in range(enc.n_layers)}
    kind = kinds.pop() if len(kinds) == 1 else None
    if (kind not in _KINDS.values() or any(dec.for_layer(i).attention != "full" for i in range(dec.n_layers))
            or cfg.positions != "learned" or cfg.position_offset or cfg.embed_norm or not cfg.head_bias
            or cfg.qkv_bias != cfg.o_bias):
        raise LlmarchError("model_type bigbird_pegasus needs one attention, bigbird or full, on every encoder layer, "
                           "full attention in the decoder, learned positions from 0, no embed_norm, head_bias, and "
                           "biases on all attention projections or none")
    out = shared_hf(cfg.replace(layer_types=None, layer_overrides=None), "bigbird_pegasus",
                    "BigBirdPegasusForConditionalGeneration", "pre")
    return dict(out, max_position_embeddings=cfg.context_length, use_bias=cfg.qkv_bias, bos_token_id=2,
                attention_type={v: k for k, v in _KINDS.items()}[kind], block_size=cfg.attention_block,
                num_random_blocks=cfg.random_blocks)


IGNORE = (r"^model\.(encoder|decoder)\.embed_tokens\.weight$",)
FAMILIES.register("bigbird_pegasus")(Family(RULES, to_config, from_config, IGNORE))
