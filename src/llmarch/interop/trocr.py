"""TrOCR's text decoder (`model_type: trocr`, TrOCRForCausalLM; Li et al. 2021, "TrOCR: Transformer-based Optical
Character Recognition with Pre-trained Models", §2.1): BART's post-norm decoder (bart.py's names under
`model.decoder.`: q, k, v, out_proj with biases, fc1/fc2, a LayerNorm after each sublayer, none after the last
block), token embeddings times sqrt(d_model) where `scale_embedding`, a LayerNorm over embeddings plus positions
where `layernorm_embedding`, and a head `output_projection` without a bias, tied by default. Positions are learned
from offset 2 (`use_learned_position_embeddings`, BART's table) or fairseq's sinusoids (sines, then cosines; not
stored) counted from padding_idx + 1, whose zeroed padding row no real token reads.

Each layer's cross-attention (`encoder_attn.*`, `encoder_attn_layer_norm`, its keys and values over memory
`cross_attention_hidden_size` wide) reads an image encoder's output, which only VisionEncoderDecoderModel gives it;
TrOCRForCausalLM's text-only forward skips it. llmarch reads it under BART's decoder names (ln_cross, cross_attn) into
blocks that hold it and never run it (`held_cross_width`), so the checkpoint writes back whole. VisionEncoderDecoder
checkpoints (`vision-encoder-decoder`) are refused in one line.

transformers' TrOCR takes no position ids: a left-padded row's learned positions count its padding slots, and its
sinusoidal positions skip pad_token_id wherever it occurs. llmarch counts each row from its first real token, as the
row alone gives, the same in both cases."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .activations import hf_activation, read_activation
from .bart import SWISH, block_rules
from .expressible import refuse_unless_read_back
from .hf import FAMILIES, Family
from .mapping import Rule

_W = ("weight", "bias")
_D = "model.decoder."
_L = _D + "layers.{i}."
RULES = [
    Rule.of(_D + "embed_tokens.weight", "embed.weight"),
    Rule.of("output_projection.weight", "lm_head.weight"),
    *block_rules(_L, "blocks.{i}."),  # the cross-attention held (held_cross_width)
]
LEARNED = [Rule.of(_D + "embed_positions.weight", "positions.weight")]
EMBED_NORM = [Rule.of(_D + f"layernorm_embedding.{w}", f"embed_norm.{w}") for w in _W]
OFFSET = 2  # TrOCRLearnedPositionalEmbedding.offset


def to_config(hf: dict) -> ModelConfig:
    learned, pad = hf.get("use_learned_position_embeddings", True), hf.get("pad_token_id", 1)
    if not learned and pad is None:
        raise LlmarchError("trocr: sinusoidal positions count from pad_token_id + 1; a config without one is not "
                           "supported (transformers cannot build it either)")
    return ModelConfig(name=hf.get("_name_or_path") or "trocr", hf_model_type="trocr", vocab_size=hf["vocab_size"],
                       d_model=hf["d_model"], n_layers=hf["decoder_layers"], n_heads=hf["decoder_attention_heads"],
                       ffn=read_activation(hf, "trocr", "activation_function", "gelu"),
                       ffn_hidden=hf["decoder_ffn_dim"], norm="layernorm", norm_eps=1e-5,
                       norm_placement="post", final_norm=False, bias=True,
                       positions="learned" if learned else "sinusoidal_fairseq",
                       position_offset=OFFSET if learned else pad + 1,
                       embed_scale=bool(hf.get("scale_embedding", False)),
                       embed_norm=bool(hf.get("layernorm_embedding", True)),
                       held_cross_width=hf.get("cross_attention_hidden_size") or hf["d_model"],
                       tie_embeddings=hf.get("tie_word_embeddings", True),
                       context_length=hf.get("max_position_embeddings", 512))


def from_config(cfg: ModelConfig) -> dict:
    learned = cfg.positions == "learned"
    hf = dict(model_type="trocr", architectures=["TrOCRForCausalLM"], vocab_size=cfg.vocab_size, d_model=cfg.d_model,
              decoder_layers=cfg.n_layers, decoder_attention_heads=cfg.n_heads, decoder_ffn_dim=cfg.ffn_hidden,
              activation_function=hf_activation(cfg.ffn, SWISH),
              max_position_embeddings=cfg.context_length, scale_embedding=cfg.embed_scale,
              use_learned_position_embeddings=learned, layernorm_embedding=cfg.embed_norm,
              tie_word_embeddings=cfg.tie_embeddings, is_decoder=True, dropout=cfg.dropout,
              attention_dropout=cfg.dropout, pad_token_id=1 if learned else cfg.position_offset - 1,
              cross_attention_hidden_size=cfg.held_cross_width or None)
    return refuse_unless_read_back(cfg, hf, to_config)


def rules(cfg: ModelConfig) -> list[Rule]:
    """The position table where it is learned, the embedding LayerNorm where there is one."""
    return (LEARNED if cfg.positions == "learned" else []) + (EMBED_NORM if cfg.embed_norm else [])


def _refuse_vision_encoder_decoder(_: dict | ModelConfig) -> ModelConfig:
    raise LlmarchError("vision-encoder-decoder (an image encoder whose output a text decoder cross-attends to: TrOCR, "
                       "Donut) is not supported; a TrOCRForCausalLM checkpoint of the decoder alone is")


FAMILIES.register("trocr")(Family(RULES, to_config, from_config, more_rules=rules))
FAMILIES.register("vision-encoder-decoder")(Family([], _refuse_vision_encoder_decoder,
                                                   _refuse_vision_encoder_decoder, ()))
