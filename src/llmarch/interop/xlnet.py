"""XLNet (`model_type: xlnet`; Yang et al. 2019, "XLNet: Generalized Autoregressive Pretraining"): Transformer-XL's
relative attention with XLNet's segment term (attention 'xl_relative' over positions 'relative_sinusoidal'), no
biases on q, k, v, o, post-norm blocks, an FFN with biases, and the LM head tied to the embeddings with a bias
(lm_loss). transformers keeps q, k, v, o and r as (d_model, heads, head_dim) tensors: q, k, v and r are our
projections' weights transposed (`xlnet_in`), o ours flattened (`xlnet_out`).

What llmarch reads is XLNet's content stream over the sequence, attn_type 'bi': XLNetLMHeadModel's forward without
perm_mask or target_mapping, every real token seeing every other (an encoder). XLNet's query stream (g, begun from
mask_emb) is not built, so neither its permutation-LM predictions nor transformers' `generate` for XLNet (a dummy
token read by the query stream, the prompt's content stream recomputed bidirectionally at each step, the attention
mask dropped) are offered: the content stream is not trained to predict the next token, so no honest causal
decoding comes from it. mask_emb is not read (transformers initialises it afresh from a written checkpoint; the
content stream never reads it). A causal stack of the same parts (causal=True) computes the content stream under the
perm_mask of the natural order (perm_mask[i, j] = 1 for j > i), and caches it; it is not read from a checkpoint.
Refused: attn_type 'uni' (its content stream alone is no LM either), bi_data, same_length; mems are not taken
(mem_len and reuse_len only size the memories a forward returns). Heads: the LM head, the per-token classifier
(XLNetForTokenClassification), base models; XLNet's sequence summary and question-answering heads are not read."""
from __future__ import annotations

import torch

from ..config import ModelConfig
from ..errors import LlmarchError
from .activations import exportable, hf_activation, read_activation
from .hf import FAMILIES, Family
from .mapping import JOINS, Rule

_W = ("weight", "bias")
CONTEXT = 512  # XLNet has no position table; the pretraining length


def _heads_in(parts, cfg):
    """(d_model, H, D) tensors used as x @ W (q, k, v or r) -> our nn.Linear weight (rows H*D each, stacked)."""
    return torch.cat([t.reshape(t.shape[0], -1).t() for t in parts])


def _heads_in_back(t, cfg):
    return [w.t().reshape(-1, cfg.n_heads, cfg.head_dim) for w in t.chunk(t.shape[0] // (cfg.n_heads * cfg.head_dim))]


# XLNet's heads kept as (d_model, H, D): q, k, v and r used as x @ W, o as W . attn (ours as they are, flattened)
JOINS["xlnet_in"] = (_heads_in, _heads_in_back)
JOINS["xlnet_out"] = (lambda parts, cfg: parts[0].reshape(parts[0].shape[0], -1),
                      lambda t, cfg: [t.reshape(t.shape[0], cfg.n_heads, cfg.head_dim)])

_L, _A = "transformer.layer.{i}.", "transformer.layer.{i}.rel_attn."
RULES = [
    Rule.of("transformer.word_embedding.weight", "embed.weight"),
    Rule.of(tuple(_A + p for p in "qkv"), "blocks.{i}.attn.qkv_proj.weight", "xlnet_in"),
    Rule.of(_A + "o", "blocks.{i}.attn.o_proj.weight", "xlnet_out"),
    Rule.of(_A + "r", "blocks.{i}.attn.r_proj.weight", "xlnet_in"),
    *[Rule.of(_A + n, f"blocks.{{i}}.attn.rel.{n}") for n in ("r_w_bias", "r_r_bias", "r_s_bias", "seg_embed")],
    *[Rule.of(_A + f"layer_norm.{w}", f"blocks.{{i}}.ln1.{w}") for w in _W],
    *[Rule.of(_L + f"ff.layer_1.{w}", f"blocks.{{i}}.mlp.up.{w}") for w in _W],
    *[Rule.of(_L + f"ff.layer_2.{w}", f"blocks.{{i}}.mlp.down.{w}") for w in _W],
    *[Rule.of(_L + f"ff.layer_norm.{w}", f"blocks.{{i}}.ln2.{w}") for w in _W],
    Rule.of("lm_loss.weight", "lm_head.weight"),
    Rule.of("lm_loss.bias", "lm_head.bias"),
]
HEADS = {"tokens": [Rule.of(f"classifier.{w}", f"classifier.{w}") for w in _W]}
IGNORE = (r"mask_emb$",)  # the query stream's first input, which the content stream never reads


def to_config(hf: dict) -> ModelConfig:
    for field, ok, why in (("attn_type", "bi", "the bidirectional content stream"), ("bi_data", False, "one "
                           "direction of positions"), ("same_length", False, "keys of every length")):
        if hf.get(field, ok) != ok:
            raise LlmarchError(f"XLNet with {field}={hf[field]!r} is not supported ({why}; the query stream and "
                               "generate are not built either)")
    d, heads = hf["d_model"], hf["n_head"]
    clamp = hf.get("clamp_len", -1)
    return ModelConfig(name=hf.get("_name_or_path") or "xlnet", hf_model_type="xlnet", vocab_size=hf["vocab_size"],
                       d_model=d, n_layers=hf["n_layer"], n_heads=heads, head_dim=hf.get("d_head") or d // heads,
                       ffn=read_activation(hf, "xlnet", "ff_activation", "gelu"), ffn_hidden=hf["d_inner"],
                       norm="layernorm",
                       norm_eps=hf.get("layer_norm_eps", 1e-12), norm_placement="post", positions="relative_sinusoidal",
                       attention="xl_relative", relative_clamp=clamp if clamp > 0 else None, causal=False,
                       qkv_bias=False, o_bias=False, head_bias=True, tie_embeddings=hf.get("tie_word_embeddings", True),
                       dropout=hf.get("dropout", 0.1), context_length=CONTEXT)


def needs(cfg: ModelConfig) -> str | None:
    if cfg.attention != "xl_relative" or cfg.positions != "relative_sinusoidal" or cfg.mixer != "attention" \
            or cfg.layer_types is not None or cfg.norm_placement != "post" or cfg.norm != "layernorm" \
            or cfg.qkv_bias or cfg.o_bias or not cfg.bias or not exportable(cfg.ffn) or cfg.causal \
            or cfg.head_transform or cfg.head == "lm" and not cfg.head_bias or cfg.embed_width != cfg.d_model:
        return ("xl_relative attention over relative_sinusoidal positions in every layer of a bidirectional post-norm "
                "stack, no q/k/v/o biases, an FFN with biases, and an LM head with a bias")
    return None


def from_config(cfg: ModelConfig) -> dict:
    return dict(model_type="xlnet", architectures=["XLNetLMHeadModel"], vocab_size=cfg.vocab_size, d_model=cfg.d_model,
                n_layer=cfg.n_layers, n_head=cfg.n_heads, d_head=cfg.head_dim, d_inner=cfg.ffn_hidden,
                ff_activation=hf_activation(cfg.ffn), attn_type="bi", bi_data=False,
                same_length=False, clamp_len=cfg.relative_clamp or -1, layer_norm_eps=cfg.norm_eps,
                dropout=cfg.dropout, tie_word_embeddings=cfg.tie_embeddings)


FAMILIES.register("xlnet")(Family(RULES, to_config, from_config, IGNORE, heads={
    "tokens": ("XLNetForTokenClassification", HEADS["tokens"])}, base_prefix="transformer.", needs=needs))
