"""MusicGen's decoder (`model_type: musicgen_decoder`, MusicgenForCausalLM; Copet et al. 2023, "Simple and
Controllable Music Generation", §2.2-2.3): a pre-norm transformer over K parallel streams of audio codes (EnCodec's
codebooks), input ids (B * K, T), each codebook its own embedding table of vocab_size + 1 rows (the last: the
pad/start code), the K embeddings of a step summed (`codebooks`: layers/codebooks.py), and its own head of
vocab_size rows without bias (`lm_heads.{k}`); tensor2tensor's sinusoids with the cosines first, from position 0
(`sinusoidal_cos_sin`, not stored); LayerNorms with bias, projections without (q, k, v, out_proj, fc1, fc2), an
ungated MLP, a final LayerNorm (`model.decoder.layer_norm`). Each layer holds a cross-attention over the text
encoder's states (`encoder_attn.*` and its LayerNorm), built whether or not the config asks for it; without
encoder_hidden_states the decoder never runs it, so llmarch holds it for the round trip (`held_cross_width`, as
trocr.py). transformers never applies `scale_embedding` (MusicgenDecoder computes embed_scale and does not use it),
so it is not read. The delay pattern of MusicGen's generation (codebook k shifted by k steps, §2.3) is the caller's:
llmarch reads and predicts the K streams as given, step by step.

transformers takes no position ids: a left-padded row's positions count its padding; llmarch counts each row from
its first real token, as the row alone gives. Refused: `musicgen` (MusicgenForConditionalGeneration: the T5 text
encoder and EnCodec beside the decoder), a tied head, stereo (`audio_channels: 2`)."""
from __future__ import annotations

import torch

from ..config import ModelConfig
from ..errors import LlmarchError
from .activations import hf_activation, read_activation
from .bart import SWISH, block_rules
from .expressible import refuse_unless_read_back
from .hf import FAMILIES, Family
from .mapping import JOINS, Rule

_W = ("weight", "bias")
_D = "model.decoder."
_L = _D + "layers.{i}."
RULES = [
    *[Rule.of(_D + f"layer_norm.{w}", f"ln_final.{w}") for w in _W],
    *block_rules(_L, "blocks.{i}."),  # the cross-attention held (held_cross_width)
]
# the K codebooks' tables (heads), stacked into our one embedding (head) and split back
JOINS["codebooks"] = (lambda parts, cfg: torch.cat(parts), lambda t, cfg: list(t.chunk(cfg.codebooks)))
# MusicgenDecoderConfig's defaults (musicgen-small's decoder is 24 layers of width 1024), for fields a config.json
# leaves out
DEFAULTS = dict(vocab_size=2048, max_position_embeddings=2048, num_hidden_layers=24, ffn_dim=4096,
                num_attention_heads=16, activation_function="gelu", hidden_size=1024, num_codebooks=4,
                audio_channels=1, tie_word_embeddings=False, dropout=0.1, attention_dropout=0.0,
                activation_dropout=0.0)
_DROPOUTS = ("dropout", "attention_dropout", "activation_dropout")


def to_config(hf: dict) -> ModelConfig:
    hf = {**DEFAULTS, **hf}
    if hf["tie_word_embeddings"] or hf["audio_channels"] != 1:
        raise LlmarchError("musicgen_decoder with tie_word_embeddings or audio_channels 2 (stereo) is not supported")
    d, heads, v = hf["hidden_size"], hf["num_attention_heads"], hf["vocab_size"]
    dropouts = {float(hf[k] or 0.0) for k in _DROPOUTS}
    return ModelConfig(name=hf.get("_name_or_path") or "musicgen_decoder", hf_model_type="musicgen_decoder",
                       vocab_size=v + 1, head_vocab=v, codebooks=hf["num_codebooks"], d_model=d,
                       n_layers=hf["num_hidden_layers"], n_heads=heads,
                       ffn=read_activation(hf, "musicgen_decoder", "activation_function", "gelu"),
                       ffn_hidden=hf["ffn_dim"],
                       norm="layernorm", norm_eps=1e-5, norm_placement="pre", bias=False, head_bias=False,
                       positions="sinusoidal_cos_sin", held_cross_width=d, tie_embeddings=False,
                       context_length=hf["max_position_embeddings"],
                       dropout=dropouts.pop() if len(dropouts) == 1 else 0.0)


def from_config(cfg: ModelConfig) -> dict:
    hf = dict(model_type="musicgen_decoder", architectures=["MusicgenForCausalLM"], vocab_size=cfg.head_vocab,
              num_codebooks=cfg.codebooks, hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers,
              num_attention_heads=cfg.n_heads, ffn_dim=cfg.ffn_hidden,
              activation_function=hf_activation(cfg.ffn, SWISH),
              max_position_embeddings=cfg.context_length, tie_word_embeddings=False, audio_channels=1,
              pad_token_id=cfg.head_vocab, bos_token_id=cfg.head_vocab, **{k: cfg.dropout for k in _DROPOUTS})
    return refuse_unless_read_back(cfg, hf, to_config)


def rules(cfg: ModelConfig) -> list[Rule]:
    """The K codebooks' embedding tables and heads."""
    k = range(cfg.codebooks)
    return [Rule.of(tuple(f"{_D}embed_tokens.{c}.weight" for c in k), "embed.weight", "codebooks"),
            Rule.of(tuple(f"lm_heads.{c}.weight" for c in k), "lm_head.weight", "codebooks")]


def _refuse_musicgen(_: dict | ModelConfig) -> ModelConfig:
    raise LlmarchError("musicgen (MusicgenForConditionalGeneration: a T5 text encoder and EnCodec beside the decoder) "
                       "is not supported; a MusicgenForCausalLM checkpoint of the decoder alone is")


FAMILIES.register("musicgen_decoder")(Family(RULES, to_config, from_config, more_rules=rules))
FAMILIES.register("musicgen")(Family([], _refuse_musicgen, _refuse_musicgen, ()))
