"""DeBERTa-v2 and v3 (`model_type: deberta-v2`; He et al. 2021, "DeBERTa: Decoding-enhanced BERT with Disentangled
Attention"; He et al. 2021, "DeBERTaV3"): BERT's post-norm encoder (bert.py's block layout) whose attention is
disentangled (attention_kinds/disentangled.py) over relative position embeddings shared by every layer
(positions 'relative_embeddings': encoder.rel_embeddings and its LayerNorm, norm_rel_ebd), log-bucketed
(position_buckets) or clamped (without buckets, v1's scheme), with optional absolute positions only where the
attention is not relative (position_biased_input), and optionally a convolution beside the first layer
(conv_kernel_size: side_conv, layers/side_conv.py; DeBERTa-v2-xlarge). Heads: the MLM head (legacy layout:
cls.predictions, BERT's), ContextPooler + classifier (dense -> pooler_hidden_act on the first token), and a
per-token classifier. Refused: relative and absolute positions together, the non-legacy MLM head
(legacy=False), an embedding_size other than hidden_size (its projection comes before the LayerNorm, bias-free)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .activations import read_activation, require_hf_activation
from .bert import _LAYER, _W
from .hf import FAMILIES, Family
from .mapping import Rule

_E, _L, _ENC = "deberta.embeddings.", "deberta.encoder.layer.{i}.", "deberta.encoder."


def shared_rules(attention: list[Rule]) -> list[Rule]:
    """Embeddings, blocks (their attention's projections given) and the legacy MLM head, as DeBERTa v1 and v2
    name them."""
    return [
        Rule.of(_E + "word_embeddings.weight", "embed.weight"),
        Rule.of(_E + "token_type_embeddings.weight", "token_types.weight"),
        *[Rule.of(_E + f"LayerNorm.{w}", f"embed_norm.{w}") for w in _W],
        *attention,
        *[Rule.of(_L + f"{hf}.{w}", f"blocks.{{i}}.{ours}.{w}") for hf, ours in _LAYER for w in _W],
        *[Rule.of(f"cls.predictions.transform.dense.{w}", f"head_transform.dense.{w}") for w in _W],
        *[Rule.of(f"cls.predictions.transform.LayerNorm.{w}", f"head_transform.norm.{w}") for w in _W],
        Rule.of("cls.predictions.bias", "lm_head.bias"),
        Rule.of("cls.predictions.decoder.weight", "lm_head.weight"),
    ]


def heads(prefix: str) -> dict:
    """ContextPooler + classifier, and the per-token classifier, under the architecture prefix."""
    return {"classify": (f"{prefix}ForSequenceClassification", [
                *[Rule.of(f"pooler.dense.{w}", f"pooler.dense.{w}") for w in _W],
                *[Rule.of(f"classifier.{w}", f"classifier.{w}") for w in _W]]),
            "tokens": (f"{prefix}ForTokenClassification", [Rule.of(f"classifier.{w}", f"classifier.{w}") for w in _W])}


RULES = shared_rules([
    *[Rule.of(tuple(_L + f"attention.self.{p}_proj.{w}" for p in ("query", "key", "value")),
              f"blocks.{{i}}.attn.qkv_proj.{w}") for w in _W],
    *[Rule.of(_L + f"attention.self.{p}.{w}", f"blocks.{{i}}.attn.{p}.{w}")
      for p in ("pos_key_proj", "pos_query_proj") for w in _W],
    *[Rule.of(_ENC + f"conv.conv.{w}", f"blocks.0.side_conv.conv.{w}") for w in _W],
    *[Rule.of(_ENC + f"conv.LayerNorm.{w}", f"blocks.0.side_conv.norm.{w}") for w in _W]])
IGNORE = (r"^cls\.predictions\.decoder\.bias$", r"embeddings\.position_ids$")


def positions_rules(cfg: ModelConfig) -> list[Rule]:
    """positions.weight: the relative embeddings (with their norm) or the absolute ones."""
    if cfg.positions == "relative_embeddings":
        return [Rule.of(_ENC + "rel_embeddings.weight", "positions.weight"),
                *[Rule.of(_ENC + f"LayerNorm.{w}", f"positions.norm.{w}") for w in _W]]
    return [Rule.of(_E + "position_embeddings.weight", "positions.weight")]


def _terms(hf: dict) -> str:
    terms = hf.get("pos_att_type") or []
    terms = [t.strip() for t in terms.lower().split("|")] if isinstance(terms, str) else [t.lower() for t in terms]
    if not terms or set(terms) - {"c2p", "p2c"}:
        raise LlmarchError(f"DeBERTa with pos_att_type {hf.get('pos_att_type')!r} is not supported (c2p, p2c or both)")
    return "+".join(t for t in ("c2p", "p2c") if t in terms)


def _relative_fields(hf: dict) -> dict:
    if not hf.get("relative_attention", False):
        return {"positions": "learned" if hf.get("position_biased_input", True) else "none"}
    if hf.get("position_biased_input", True):
        raise LlmarchError("DeBERTa with both relative_attention and position_biased_input is not supported")
    longest = hf.get("max_relative_positions", -1)
    longest = longest if longest >= 1 else hf.get("max_position_embeddings", 512)
    buckets = hf.get("position_buckets", -1)
    norm = [x.strip() for x in str(hf.get("norm_rel_ebd", "none")).lower().split("|")]
    return dict(positions="relative_embeddings", attention="disentangled", disentangled_terms=_terms(hf),
                relative_buckets=2 * (buckets if buckets > 0 else longest), relative_max_distance=longest,
                relative_log_buckets=buckets > 0, relative_norm="layer_norm" in norm,
                disentangled_shared_proj=bool(hf.get("share_att_key", False)))


def to_config(hf: dict) -> ModelConfig:
    d = hf["hidden_size"]
    if not hf.get("legacy", True):
        raise LlmarchError("DeBERTa with legacy=False (the lm_predictions MLM head) is not supported")
    if hf.get("embedding_size", d) != d or hf.get("pooler_hidden_size", d) != d:
        raise LlmarchError("DeBERTa with embedding_size or pooler_hidden_size other than hidden_size is not supported")
    return ModelConfig(
        name=hf.get("_name_or_path") or "deberta-v2", hf_model_type="deberta-v2", vocab_size=hf["vocab_size"],
        d_model=d, n_layers=hf["num_hidden_layers"], n_heads=hf["num_attention_heads"],
        head_dim=hf.get("attention_head_size"),
        ffn=read_activation(hf, hf.get("model_type") or "deberta-v2", "hidden_act", "gelu"),
        ffn_hidden=hf["intermediate_size"],
        norm="layernorm", norm_eps=hf.get("layer_norm_eps", 1e-7), norm_placement="post", causal=False,
        type_vocab_size=hf.get("type_vocab_size", 0), embed_norm=True, head_transform=True, head_bias=True,
        tie_embeddings=hf.get("tie_word_embeddings", True), context_length=hf.get("max_position_embeddings", 512),
        pooler_act=hf.get("pooler_hidden_act", "gelu"), side_conv=hf.get("conv_kernel_size", 0),
        side_conv_act=hf.get("conv_act", "tanh"), side_conv_groups=hf.get("conv_groups", 1), **_relative_fields(hf))


def needs(cfg: ModelConfig) -> str | None:
    """Family.needs: what DeBERTa's layout cannot hold, or None."""
    if cfg.positions not in ("relative_embeddings", "learned", "none") or cfg.position_offset or (
            cfg.norm_placement != "post" or cfg.embed_width != cfg.d_model or not cfg.embed_norm):
        return "post-norm blocks, an embedding norm at d_model width, and relative_embeddings, learned (from 0) or " \
            "no positions"
    return None


def from_config(cfg: ModelConfig) -> dict:
    relative = cfg.positions == "relative_embeddings"
    out = dict(model_type="deberta-v2", architectures=["DebertaV2ForMaskedLM"], vocab_size=cfg.vocab_size,
               hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
               attention_head_size=cfg.head_dim, intermediate_size=cfg.ffn_hidden,
               hidden_act=require_hf_activation(cfg.ffn, cfg.hf_model_type or "deberta-v2"),
               layer_norm_eps=cfg.norm_eps,
               type_vocab_size=cfg.type_vocab_size, max_position_embeddings=cfg.context_length,
               tie_word_embeddings=cfg.tie_embeddings, pooler_hidden_act=cfg.pooler_act, legacy=True,
               relative_attention=relative, position_biased_input=cfg.positions == "learned",
               conv_kernel_size=cfg.side_conv, conv_act=cfg.side_conv_act, conv_groups=cfg.side_conv_groups)
    if relative:
        span = cfg.relative_buckets // 2
        out.update(pos_att_type=cfg.disentangled_terms.split("+"), share_att_key=cfg.disentangled_shared_proj,
                   position_buckets=span if cfg.relative_log_buckets else -1,
                   max_relative_positions=cfg.relative_max_distance if cfg.relative_log_buckets else span,
                   norm_rel_ebd="layer_norm" if cfg.relative_norm else "none")
    return out


FAMILIES.register("deberta-v2")(Family(RULES, to_config, from_config, IGNORE, heads=heads("DebertaV2"),
                                       more_rules=positions_rules, base_prefix="deberta.", needs=needs))
