"""XGLM (`model_type: xglm`; Lin et al. 2022, "Few-shot Learning with Multilingual Generative Language Models",
§2.1): fairseq's pre-norm decoder, OPT's layout under `model.` (q, k, v, out_proj with biases, fc1/fc2, a LayerNorm
before each sublayer and one after the last block), token embeddings times sqrt(d_model) (scale_embedding), and
fixed sinusoidal positions in fairseq's layout (sines, then cosines: positions sinusoidal_fairseq, as M2M-100's),
counted from offset 2 and not stored; tied head without a bias. transformers zeroes the table's row padding_idx
(pad_token_id); with the offset of 2 no position reads it while pad_token_id < 2 (the published 0 or 1), so a
larger one is refused. add_cross_attention (XGLM as a decoder of an encoder-decoder) is refused."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .activations import hf_activation, read_activation
from .expressible import refuse_unless_read_back
from .hf import FAMILIES, Family
from .mapping import Rule

_L = "model.layers.{i}."
_W = ("weight", "bias")
_LAYER = [("self_attn.out_proj", "attn.o_proj"), ("self_attn_layer_norm", "ln1"), ("fc1", "mlp.up"),
          ("fc2", "mlp.down"), ("final_layer_norm", "ln2")]
RULES = [
    Rule.of("model.embed_tokens.weight", "embed.weight"),
    *[Rule.of(tuple(_L + f"self_attn.{p}_proj.{w}" for p in "qkv"), f"blocks.{{i}}.attn.qkv_proj.{w}") for w in _W],
    *[Rule.of(_L + f"{hf}.{w}", f"blocks.{{i}}.{ours}.{w}") for hf, ours in _LAYER for w in _W],
    *[Rule.of(f"model.layer_norm.{w}", f"ln_final.{w}") for w in _W],
    Rule.of("lm_head.weight", "lm_head.weight"),
]
OFFSET = 2  # XGLMSinusoidalPositionalEmbedding.offset


def to_config(hf: dict) -> ModelConfig:
    if hf.get("add_cross_attention"):
        raise LlmarchError("xglm: add_cross_attention (a decoder with cross-attention) is not supported")
    pad = hf.get("pad_token_id", 1)
    if pad is not None and pad >= OFFSET:
        raise LlmarchError(f"xglm: pad_token_id {pad} zeroes the row of position {pad - OFFSET} in transformers' "
                           "sinusoidal table; only pad_token_id < 2 (or none) is supported")
    return ModelConfig(name=hf.get("_name_or_path") or "xglm", hf_model_type="xglm", vocab_size=hf["vocab_size"],
                       d_model=hf["d_model"], n_layers=hf["num_layers"], n_heads=hf["attention_heads"],
                       ffn=read_activation(hf, "xglm", "activation_function", "gelu"), ffn_hidden=hf["ffn_dim"],
                       norm="layernorm", norm_eps=1e-5,
                       positions="sinusoidal_fairseq", position_offset=OFFSET,
                       embed_scale=bool(hf.get("scale_embedding", True)),
                       tie_embeddings=hf.get("tie_word_embeddings", True),
                       context_length=hf.get("max_position_embeddings", 2048))


def from_config(cfg: ModelConfig) -> dict:
    hf = dict(model_type="xglm", architectures=["XGLMForCausalLM"], vocab_size=cfg.vocab_size, d_model=cfg.d_model,
              num_layers=cfg.n_layers, attention_heads=cfg.n_heads, ffn_dim=cfg.ffn_hidden,
              activation_function=hf_activation(cfg.ffn),
              max_position_embeddings=cfg.context_length, scale_embedding=cfg.embed_scale,
              tie_word_embeddings=cfg.tie_embeddings, dropout=cfg.dropout, attention_dropout=cfg.dropout,
              pad_token_id=1)
    return refuse_unless_read_back(cfg, hf, to_config)


FAMILIES.register("xglm")(Family(RULES, to_config, from_config,
                                 ignore=(r"embed_positions\.(weights|_float_tensor)$",)))
