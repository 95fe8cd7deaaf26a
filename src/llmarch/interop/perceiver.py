"""Perceiver IO (`model_type: perceiver`; Jaegle et al. 2021; transformers' PerceiverForMaskedLM, the byte-level
deepmind/language-perceiver): token embeddings plus learned positions, read by `num_latents` latents through one
cross-attention layer, `num_blocks` passes over `num_self_attends_per_block` self-attention layers (weights shared
across passes: our layer_groups with layer_groups_cyclic), then one cross-attention from a learned query per position
back to the latents, and logits from the embedding matrix transposed plus a bias (models/perceiver.py).
The top level of our config describes the inputs and that decoding cross-attention, which transformers builds with
8 heads, q and k 256 wide, values as wide as d_model and no query residual; latent_parts the latents (d_latents wide)
and the encoding cross-attention (qk_channels, v_channels, cross_attention_shape_for_attention). Every LayerNorm is
torch's default (eps 1e-5: layer_norm_eps is not read). Refused: every other Perceiver architecture (image, optical
flow, multimodal, text classification), and self-attention values narrower than d_latents (transformers fails)."""
from __future__ import annotations

import itertools

import torch

from ..config import ModelConfig
from ..errors import LlmarchError
from ..models.perceiver import part_config
from .activations import exportable, hf_activation, read_activation
from .hf import FAMILIES, Family
from .mapping import JOINS, Rule

_W = ("weight", "bias")
_P = "perceiver."
# transformers' PerceiverForMaskedLM decoder: 8 heads over q and k 256 wide, one FFN as wide as d_model
DECODER_HEADS, DECODER_QK = 8, 256


def _join_qkv(parts: list[torch.Tensor], cfg) -> torch.Tensor:
    return torch.cat(parts)


def _split_qkv(t: torch.Tensor, cfg) -> list[torch.Tensor]:
    """Our latent blocks' qkv_proj rows (or bias) as query, key, value at the latent stack's widths."""
    lc = part_config(cfg, "latents")
    qk, v = lc.n_heads * lc.head_dim, lc.n_kv_heads * lc.value_width
    return list(t.split([qk, lc.n_kv_heads * lc.head_dim, v]))


JOINS["perceiver_latent_qkv"] = (_join_qkv, _split_qkv)


def _cross_rules(hf: str, ours: str) -> list[Rule]:
    a = hf + "attention."
    names = [("self.layernorm1", "q_norm"), ("self.layernorm2", "kv_norm"), ("self.query", "q_proj"),
             ("self.key", "k_proj"), ("self.value", "v_proj"), ("output.dense", "o_proj")]
    return [*(Rule.of(a + h + f".{w}", ours + o + f".{w}") for h, o in names for w in _W),
            *(Rule.of(hf + h + f".{w}", ours + o + f".{w}") for h, o in
              (("layernorm", "ln2"), ("mlp.dense1", "mlp.up"), ("mlp.dense2", "mlp.down")) for w in _W)]


_L = _P + "encoder.self_attends.{i}."
RULES = [
    Rule.of(_P + "input_preprocessor.embeddings.weight", "embed.weight"),
    Rule.of(_P + "input_preprocessor.position_embeddings.weight", "positions.weight"),
    Rule.of(_P + "embeddings.latents", "latents"),
    *_cross_rules(_P + "encoder.cross_attention.", "encoder_cross."),
    # {i} counts the layers of one pass: blocks past layer_groups do not exist, and their rules are skipped both ways
    *(Rule.of(tuple(_L + f"attention.self.{p}.{w}" for p in ("query", "key", "value")),
              f"latent_stack.blocks.{{i}}.attn.qkv_proj.{w}", "perceiver_latent_qkv") for w in _W),
    *(Rule.of(_L + h + f".{w}", f"latent_stack.blocks.{{i}}.{o}.{w}") for h, o in
      (("attention.self.layernorm1", "ln1"), ("attention.output.dense", "attn.o_proj"), ("layernorm", "ln2"),
       ("mlp.dense1", "mlp.up"), ("mlp.dense2", "mlp.down")) for w in _W),
    Rule.of(_P + "decoder.output_position_encodings.position_embeddings", "query_positions.weight"),
    *_cross_rules(_P + "decoder.decoding_cross_attention.", "decoder_cross."),
    Rule.of("embedding_decoder.bias", "lm_head.bias"),
]


def _widths(hf: dict) -> dict:
    """The q.k and value widths of transformers' encoder layers (cross_qk, cross_v, self_qk, self_v), from a
    config.json's channels."""
    qk, v, latents = hf.get("qk_channels"), hf.get("v_channels"), hf.get("d_latents", 1280)
    shape = hf.get("cross_attention_shape_for_attention", "kv")
    if shape not in ("kv", "q"):
        raise LlmarchError(f"perceiver: unknown cross_attention_shape_for_attention {shape!r}")
    cross_qk = qk or (hf.get("d_model", 768) if shape == "kv" else latents)
    self_qk = qk or latents
    return dict(cross_qk=cross_qk, cross_v=v or cross_qk, self_qk=self_qk, self_v=v or self_qk)


def to_config(hf: dict) -> ModelConfig:
    arch = (hf.get("architectures") or ["PerceiverForMaskedLM"])[0]
    if arch != "PerceiverForMaskedLM":
        raise LlmarchError(f"perceiver: {arch} is not supported; llmarch reads the text masked LM "
                           "(PerceiverForMaskedLM) only")
    d, latents = hf.get("d_model", 768), hf.get("d_latents", 1280)
    w, ffn = _widths(hf), read_activation(hf, "perceiver", "hidden_act", "gelu")
    sh, ch = hf.get("num_self_attention_heads", 8), hf.get("num_cross_attention_heads", 8)
    if w["self_v"] != latents:
        raise LlmarchError(f"perceiver: self-attention values {w['self_v']} wide (v_channels) beside latents "
                           f"{latents} wide: transformers adds them to the latents, so they must be as wide")
    if any(w[k] % h for k, h in (("cross_qk", ch), ("cross_v", ch), ("self_qk", sh))) \
            or d % DECODER_HEADS:
        raise LlmarchError("perceiver: channels that the heads do not divide")
    parts = {"latents": dict(d_model=latents, n_heads=sh, head_dim=w["self_qk"] // sh, value_dim=latents // sh,
                             ffn_hidden=hf.get("self_attention_widening_factor", 1) * latents),
             "encode": dict(n_heads=ch, head_dim=w["cross_qk"] // ch, value_dim=w["cross_v"] // ch,
                            ffn_hidden=hf.get("cross_attention_widening_factor", 1) * latents,
                            query_residual=bool(hf.get("use_query_residual", True)))}
    S = hf.get("num_self_attends_per_block", 26)
    return ModelConfig(name=hf.get("_name_or_path") or "perceiver", hf_model_type="perceiver",
                       vocab_size=hf.get("vocab_size", 262), d_model=d, n_layers=hf.get("num_blocks", 1) * S,
                       layer_groups=S, layer_groups_cyclic=True, n_heads=DECODER_HEADS,
                       head_dim=DECODER_QK // DECODER_HEADS, value_dim=d // DECODER_HEADS, ffn=ffn, ffn_hidden=d,
                       norm="layernorm", norm_eps=1e-5, norm_placement="pre", positions="learned", causal=False,
                       final_norm=False, head_bias=True, tie_embeddings=True, bias=True, query_residual=False,
                       context_length=hf.get("max_position_embeddings", 2048), n_latents=hf.get("num_latents", 256),
                       latent_parts=parts)


def _channels(cfg: ModelConfig) -> dict | None:
    """qk_channels, v_channels and cross_attention_shape_for_attention that give cfg's encoder widths, or None."""
    lc, ec = part_config(cfg, "latents"), part_config(cfg, "encode")
    want = dict(cross_qk=ec.n_heads * ec.head_dim, cross_v=ec.n_heads * ec.value_width,
                self_qk=lc.n_heads * lc.head_dim, self_v=lc.n_heads * lc.value_width)
    if want["self_v"] != lc.d_model:  # transformers adds the self-attention's values to the latents
        return None
    for qk, v, shape in itertools.product((None, want["self_qk"]), (None, lc.d_model), ("kv", "q")):
        hf = dict(qk_channels=qk, v_channels=v, cross_attention_shape_for_attention=shape)
        if _widths({**hf, "d_model": cfg.d_model, "d_latents": lc.d_model}) == want:
            return hf
    return None


def needs(cfg: ModelConfig) -> str | None:
    if not cfg.n_latents:
        return "a Perceiver IO model (n_latents, latent_parts)"
    lc, ec = part_config(cfg, "latents"), part_config(cfg, "encode")
    groups = cfg.layer_groups or cfg.n_layers
    plain = all((c.norm, c.norm_eps, c.norm_bias, c.qkv_bias, c.o_bias, c.ffn_in_bias, c.bias, c.n_kv_heads,
                 c.attention, c.qk_norm, c.attn_scale) == ("layernorm", 1e-5, True, True, True, True, True, c.n_heads,
                                                           "full", "none", None) for c in (cfg, lc, ec))
    decoder = (cfg.n_heads, cfg.head_dim, cfg.n_heads * cfg.value_width, cfg.ffn_hidden, cfg.query_residual) == \
        (DECODER_HEADS, DECODER_QK // DECODER_HEADS, cfg.d_model, cfg.d_model, False)
    if not plain or not decoder or not exportable(cfg.ffn) or not cfg.tied_head or not cfg.head_bias \
            or lc.ffn_hidden % lc.d_model or ec.ffn_hidden % lc.d_model or _channels(cfg) is None \
            or not (cfg.layer_groups_cyclic or groups == cfg.n_layers):
        return ("LayerNorms (eps 1e-5), biases and plain full attention throughout, transformers' decoding "
                "cross-attention (8 heads, q.k 256, values and FFN d_model wide, no query residual), FFNs a whole "
                "multiple of the latents' width, encoder channels one qk_channels / v_channels pair gives (self-"
                "attention values as wide as the latents), layer groups repeated in order, and the tied LM head with "
                "its bias")
    return None


def from_config(cfg: ModelConfig) -> dict:
    lc, ec = part_config(cfg, "latents"), part_config(cfg, "encode")
    groups = cfg.layer_groups or cfg.n_layers
    return dict(model_type="perceiver", architectures=["PerceiverForMaskedLM"], vocab_size=cfg.vocab_size,
                d_model=cfg.d_model, d_latents=lc.d_model, num_latents=cfg.n_latents, num_blocks=cfg.n_layers // groups,
                num_self_attends_per_block=groups, num_self_attention_heads=lc.n_heads,
                num_cross_attention_heads=ec.n_heads, **_channels(cfg),
                self_attention_widening_factor=lc.ffn_hidden // lc.d_model,
                cross_attention_widening_factor=ec.ffn_hidden // lc.d_model,
                hidden_act=hf_activation(cfg.ffn), use_query_residual=ec.query_residual,
                max_position_embeddings=cfg.context_length, attention_probs_dropout_prob=cfg.dropout,
                tie_word_embeddings=True)


FAMILIES.register("perceiver")(Family(RULES, to_config, from_config, needs=needs))
