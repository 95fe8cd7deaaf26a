"""MPNet (`model_type: mpnet`; Song et al. 2020, "MPNet: Masked and Permuted Pre-training for Language
Understanding", arXiv 2004.09297): BERT's post-norm encoder with no token types and two position signals
(positions='learned_t5_relative'): a learned table counted from padding_idx + 1 = 2, as RoBERTa's (MPNet's
padding_idx is 1 whatever pad_token_id says), and T5's bidirectional relative bias, 32 buckets up to distance 128,
one table (`encoder.relative_attention_bias`) added to the scores of every layer. Its names: `attention.attn.q/k/v/o`,
`attention.LayerNorm` after attention, BERT's `intermediate` / `output` MLP. The MLM head is RoBERTa's (lm_head:
dense -> GELU -> layer_norm -> tied decoder with `lm_head.bias`). Heads: the masked LM; MPNetModel (the body of
sentence-transformers' all-mpnet-base-v2) reads as head `embed`."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .bert import from_config as bert_hf
from .bert import to_config as bert_config
from .hf import FAMILIES, Family
from .mapping import Rule

_W = ("weight", "bias")
_E, _L = "mpnet.embeddings.", "mpnet.encoder.layer.{i}."
_LAYER = [("attention.attn.o", "attn.o_proj"), ("attention.LayerNorm", "ln1"), ("intermediate.dense", "mlp.up"),
          ("output.dense", "mlp.down"), ("output.LayerNorm", "ln2")]
RULES = [
    Rule.of(_E + "word_embeddings.weight", "embed.weight"),
    Rule.of(_E + "position_embeddings.weight", "positions.table"),
    Rule.of("mpnet.encoder.relative_attention_bias.weight", "positions.weight"),
    *[Rule.of(_E + f"LayerNorm.{w}", f"embed_norm.{w}") for w in _W],
    *[Rule.of(tuple(_L + f"attention.attn.{p}.{w}" for p in "qkv"), f"blocks.{{i}}.attn.qkv_proj.{w}") for w in _W],
    *[Rule.of(_L + f"{hf}.{w}", f"blocks.{{i}}.{ours}.{w}") for hf, ours in _LAYER for w in _W],
    *[Rule.of(f"lm_head.dense.{w}", f"head_transform.dense.{w}") for w in _W],
    *[Rule.of(f"lm_head.layer_norm.{w}", f"head_transform.norm.{w}") for w in _W],
    Rule.of("lm_head.decoder.weight", "lm_head.weight"), Rule.of("lm_head.bias", "lm_head.bias"),
]
IGNORE = (r"^lm_head\.decoder\.bias$", r"embeddings\.position_ids$")
_OFFSET = 2  # MPNetEmbeddings.padding_idx (1) + 1
_BUCKETS, _DISTANCE = 32, 128  # MPNetEncoder.compute_position_bias's, whatever the table's rows


def to_config(hf: dict) -> ModelConfig:
    if hf.get("hidden_act", "gelu") != "gelu":  # MPNetLMHead applies exact GELU whatever the MLP's activation
        raise LlmarchError(f"mpnet: hidden_act {hf['hidden_act']!r} is not supported (gelu: the MLM head's is gelu)")
    if hf.get("relative_attention_num_buckets", _BUCKETS) != _BUCKETS:
        raise LlmarchError(f"mpnet: relative_attention_num_buckets {hf['relative_attention_num_buckets']} is not "
                           f"supported (transformers buckets offsets into {_BUCKETS} whatever the table's size)")
    cfg = bert_config({**hf, "type_vocab_size": 0})
    return cfg.replace(name=hf.get("_name_or_path") or "mpnet", hf_model_type="mpnet", type_vocab_size=0,
                       positions="learned_t5_relative", relative_buckets=_BUCKETS, relative_max_distance=_DISTANCE,
                       position_offset=_OFFSET, pad_id=hf.get("pad_token_id", 1),
                       context_length=hf.get("max_position_embeddings", 514) - _OFFSET)


def needs(cfg: ModelConfig) -> str | None:
    if cfg.positions != "learned_t5_relative" or cfg.position_offset != _OFFSET or cfg.type_vocab_size \
            or (cfg.relative_buckets, cfg.relative_max_distance) != (_BUCKETS, _DISTANCE) or cfg.ffn != "gelu" \
            or cfg.norm_placement != "post" or cfg.causal or not cfg.bias or cfg.n_kv_heads != cfg.n_heads:
        return (f"a bidirectional post-norm GELU encoder with biases, MHA, no token types and positions "
                f"'learned_t5_relative' ({_BUCKETS} buckets to distance {_DISTANCE}, offset {_OFFSET})")
    return None


def from_config(cfg: ModelConfig) -> dict:
    out = {k: v for k, v in bert_hf(cfg).items() if k != "type_vocab_size"}
    return {**out, "model_type": "mpnet", "architectures": ["MPNetForMaskedLM"], "pad_token_id": cfg.pad_id,
            "relative_attention_num_buckets": _BUCKETS, "max_position_embeddings": cfg.context_length + _OFFSET}


FAMILIES.register("mpnet")(Family(RULES, to_config, from_config, IGNORE, needs=needs, base_prefix="mpnet."))
