"""Reformer (`model_type: reformer`; Kitaev et al. 2020): ReformerModelWithLMHead (is_decoder) and
ReformerForMaskedLM. In llmarch a configuration: the reversible two-stream residual (hyper_connection
'reversible', the head reading [Y2; Y1], hc_side_by_side), axial or learned positions, and per layer (layer_types:
transformers' attn_layers) lsh_chunks or local_chunks attention over their own chunk lengths, the sequence padded
as transformers pads its inputs (to the least common multiple of the chunk lengths, once longer than the shortest).

LSH's rotations are drawn from transformers' hash_seed as transformers draws them (the same in every layer); a
checkpoint without one (transformers then draws new rotations at every forward) is read with seed 0. The bucket
count must be one even number: transformers' factorised buckets (a list) and its choice by sequence length (None)
are refused. transformers' lm_head.bias is a parameter its forward never reads (decoder.bias is the head's bias)."""
from __future__ import annotations

import math

from ..config import ModelConfig
from ..errors import LlmarchError
from .activations import exportable, hf_activation, read_activation
from .hf import FAMILIES, Family
from .mapping import Rule

_L = "reformer.encoder.layers.{i}."
_W = ("weight", "bias")
_KINDS = {"lsh": "lsh_chunks", "local": "local_chunks"}
RULES = [
    Rule.of("reformer.embeddings.word_embeddings.weight", "embed.weight"),
    *[Rule.of(f"{_L}attention.layer_norm.{w}", f"blocks.{{i}}.ln1.{w}") for w in _W],
    Rule.of(_L + "attention.output.dense.weight", "blocks.{i}.attn.o_proj.weight"),
    *[Rule.of(f"{_L}feed_forward.layer_norm.{w}", f"blocks.{{i}}.ln2.{w}") for w in _W],
    *[Rule.of(f"{_L}feed_forward.dense.dense.{w}", f"blocks.{{i}}.mlp.up.{w}") for w in _W],
    *[Rule.of(f"{_L}feed_forward.output.dense.{w}", f"blocks.{{i}}.mlp.down.{w}") for w in _W],
    *[Rule.of(f"reformer.encoder.layer_norm.{w}", f"ln_final.{w}") for w in _W],
    *[Rule.of(f"lm_head.decoder.{w}", f"lm_head.{w}") for w in _W],
]


def more_rules(cfg: ModelConfig) -> list[Rule]:
    """Each layer's projections, named by its kind, and the position table(s)."""
    rules = [Rule.of("reformer.embeddings.position_embeddings.weights.0", "positions.rows"),
             Rule.of("reformer.embeddings.position_embeddings.weights.1", "positions.cols")] \
        if cfg.positions == "axial" else [Rule.of("reformer.embeddings.position_embeddings.embedding.weight",
                                                  "positions.weight")]
    for i in range(cfg.n_layers):
        att = f"reformer.encoder.layers.{i}.attention.self_attention."
        names = ("query_key", "value") if cfg.for_layer(i).attention == "lsh_chunks" else ("query", "key", "value")
        rules.append(Rule.of(tuple(f"{att}{n}.weight" for n in names), f"blocks.{i}.attn.qkv_proj.weight"))
    return rules


def to_config(hf: dict) -> ModelConfig:
    types = list(hf.get("attn_layers", ["local", "lsh", "local", "lsh", "local", "lsh"]))
    buckets = hf.get("num_buckets")
    if "lsh" in types and not isinstance(buckets, int):
        raise LlmarchError(f"reformer: num_buckets must be one even number, got {buckets!r} (factorised or chosen by "
                           "sequence length are not supported)")
    if set(types) - set(_KINDS):
        raise LlmarchError(f"reformer: attn_layers may name 'lsh' and 'local' only, got {types}")
    if hf.get("tie_word_embeddings", False):
        raise LlmarchError("reformer: tie_word_embeddings needs a head as wide as the embeddings; Reformer's reads 2 * "
                           "hidden_size")
    chunks = {"lsh": (hf.get("lsh_attn_chunk_length", 64), hf.get("lsh_num_chunks_before", 1),
                      hf.get("lsh_num_chunks_after", 0)),
              "local": (hf.get("local_attn_chunk_length", 64), hf.get("local_num_chunks_before", 1),
                        hf.get("local_num_chunks_after", 0))}
    overrides = {t: dict(attention=_KINDS[t], attention_chunk=c, chunks_before=b, chunks_after=a)
                 for t, (c, b, a) in chunks.items() if t in types}
    lengths = [chunks[t][0] for t in dict.fromkeys(types)]
    axial = hf.get("axial_pos_embds", True)
    return ModelConfig(
        name=hf.get("_name_or_path") or "reformer", hf_model_type="reformer", vocab_size=hf.get("vocab_size", 320),
        d_model=hf.get("hidden_size", 256), n_layers=len(types), n_heads=hf.get("num_attention_heads", 12),
        n_kv_heads=hf.get("num_attention_heads", 12), head_dim=hf.get("attention_head_size", 64),
        ffn=read_activation(hf, "reformer", "hidden_act", "relu"), ffn_hidden=hf.get("feed_forward_size", 512),
        norm="layernorm",
        norm_eps=hf.get("layer_norm_eps", 1e-12), positions="axial" if axial else "learned",
        axial_shape=list(hf.get("axial_pos_shape", (64, 64))) if axial else None,
        axial_dims=list(hf.get("axial_pos_embds_dim", (64, 192))) if axial else None,
        context_length=hf.get("max_position_embeddings", 4096), causal=bool(hf.get("is_decoder", False)),
        qkv_bias=False, o_bias=False, bias=True, head_bias=True, tie_embeddings=False,
        dropout=hf.get("hidden_dropout_prob", 0.05), hyper_connection="reversible", hc_streams=2,
        hc_side_by_side=True, reversible_backward=True, layer_types=types, layer_overrides=overrides,
        lsh_buckets=buckets if isinstance(buckets, int) else 8, lsh_rounds=hf.get("num_hashes", 1),
        attention_seed=hf.get("hash_seed") or 0, attention_pad_multiple=math.lcm(*lengths),
        attention_pad_above=min(lengths), **overrides[types[0]])


def from_config(cfg: ModelConfig) -> dict:
    over = cfg.layer_overrides or {}
    head = "ReformerModelWithLMHead" if cfg.causal else "ReformerForMaskedLM"
    out = dict(model_type="reformer", architectures=[head],
               is_decoder=cfg.causal, vocab_size=cfg.vocab_size, hidden_size=cfg.d_model,
               num_attention_heads=cfg.n_heads, attention_head_size=cfg.head_dim, attn_layers=list(cfg.layer_types),
               hidden_act=hf_activation(cfg.ffn), feed_forward_size=cfg.ffn_hidden,
               layer_norm_eps=cfg.norm_eps, axial_pos_embds=cfg.positions == "axial",
               max_position_embeddings=cfg.context_length, hidden_dropout_prob=cfg.dropout,
               num_buckets=cfg.lsh_buckets, num_hashes=cfg.lsh_rounds, hash_seed=cfg.attention_seed,
               tie_word_embeddings=False)
    if cfg.positions == "axial":
        out.update(axial_pos_shape=list(cfg.axial_shape), axial_pos_embds_dim=list(cfg.axial_dims))
    for t in ("lsh", "local"):
        if t in over:
            o = over[t]
            out.update({f"{t}_attn_chunk_length": o["attention_chunk"], f"{t}_num_chunks_before": o["chunks_before"],
                        f"{t}_num_chunks_after": o["chunks_after"]})
    return out


def needs(cfg: ModelConfig) -> str | None:
    kinds = {cfg.for_layer(i).attention for i in range(cfg.n_layers)}
    if cfg.hyper_connection != "reversible" or not cfg.layer_types or not kinds <= set(_KINDS.values()) \
            or cfg.positions not in ("axial", "learned") or cfg.norm != "layernorm" or not exportable(cfg.ffn):
        return "Reformer's reversible layers of lsh_chunks / local_chunks attention named by layer_types, " \
               "LayerNorms, axial or learned positions"
    return None


FAMILIES.register("reformer")(Family(RULES, to_config, from_config, ignore=(r"^lm_head\.bias$",), more_rules=more_rules,
                                     needs=needs))
