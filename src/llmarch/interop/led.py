"""LED (`model_type: led`; Beltagy et al. 2020, "Longformer", §5: the Longformer-Encoder-Decoder): BART's post-norm
layout (bart.py: learned positions, here counted from 0, a LayerNorm over the embeddings of each stack, the tied
shared embedding and a logits bias) under `led.`, whose encoder attends as Longformer does (our `longformer`
attention kind, longformer.py): each token sees attention_window/2 keys on either side (sliding_window = w/2 + 1),
and tokens marked in global_attention_mask attend to and are attended by every token through their own projections
(`query_global`, `key_global`, `value_global`: our qkv_global). The encoder's and decoder's position tables differ
in size (max_encoder_position_embeddings: context_length; max_decoder_position_embeddings: decoder_context_length).
transformers pads the source to a multiple of the window; padding is masked, so real tokens see the same keys.
Every encoder layer must use the same window."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .bart import shared_fields, shared_hf, stack_rules
from .hf import FAMILIES, Family
from .mapping import Rule

LOCAL = "longformer_attention"
_ATTN = "self_attn.longformer_self_attn."
RULES = [Rule.of("led.shared.weight", "embed.weight"), Rule.of("final_logits_bias", "lm_head.bias", "row"),
         Rule.of("lm_head.weight", "lm_head.weight"),
         *stack_rules(True, prefix="led", encoder_attn=(_ATTN + "query", _ATTN + "key", _ATTN + "value",
                                                         "self_attn.output")),
         *[Rule.of(tuple(f"led.encoder.layers.{{i}}.{_ATTN}{p}_global.{w}" for p in ("query", "key", "value")),
                   f"encoder.blocks.{{i}}.attn.qkv_global.{w}") for w in ("weight", "bias")]]


def to_config(hf: dict) -> ModelConfig:
    windows = hf.get("attention_window", 512)
    windows = set(windows) if isinstance(windows, list) else {windows}
    if len(windows) != 1:
        raise LlmarchError(f"LED with different windows per layer ({sorted(windows)}) is not supported")
    window = windows.pop()
    if window % 2 or window < 2:
        raise LlmarchError(f"attention_window must be even and positive, got {window}")
    fields = shared_fields(hf)
    n, n_dec = fields["n_layers"], fields["n_decoder_layers"]
    return ModelConfig(**fields, positions="learned", embed_norm=True,
                       context_length=hf.get("max_encoder_position_embeddings", 16384),
                       decoder_context_length=hf.get("max_decoder_position_embeddings", 1024),
                       layer_types=[LOCAL] * n + ["full_attention"] * n_dec,
                       layer_overrides={LOCAL: {"attention": "longformer", "sliding_window": window // 2 + 1}})


def from_config(cfg: ModelConfig) -> dict:
    enc, dec = cfg.stack_config("encoder"), cfg.stack_config("decoder")
    windows = {(enc.for_layer(i).attention, enc.for_layer(i).sliding_window) for i in range(enc.n_layers)}
    kind, window = windows.pop() if len(windows) == 1 else (None, None)
    if (kind != "longformer" or any(dec.for_layer(i).attention != "full" for i in range(dec.n_layers))
            or cfg.positions != "learned" or cfg.position_offset or not cfg.embed_norm):
        raise LlmarchError("model_type led needs longformer attention with one window on every encoder layer, full "
                           "attention in the decoder, learned positions from 0 and embed_norm")
    out = shared_hf(cfg.replace(layer_types=None, layer_overrides=None), "led", "LEDForConditionalGeneration")
    return dict(out, attention_window=[2 * (window - 1)] * cfg.n_layers, bos_token_id=0,
                max_encoder_position_embeddings=cfg.context_length,
                max_decoder_position_embeddings=dec.context_length)


IGNORE = (r"^led\.(encoder|decoder)\.embed_tokens\.weight$",)
FAMILIES.register("led")(Family(RULES, to_config, from_config, IGNORE))
