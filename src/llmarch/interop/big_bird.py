"""BigBird (`model_type: big_bird`; Zaheer et al. 2020): BERT's post-norm layout under `bert.` with
`attention_type` block_sparse read as attention 'bigbird' (layers/attention_kinds/bigbird.py: transformers'
inference pattern, `block_size` as attention_block, `num_random_blocks` as random_blocks, full attention for
inputs of at most (5 + 2r) b tokens) and original_full as full attention; `use_bias` on q, k, v;
`rescale_embeddings` as embed_scale (token embeddings times sqrt(hidden_size)). Heads: the masked LM (BERT's
`cls.predictions`), the per-token classifier; BigBirdModel reads as head `embed`. Refused: the decoder forms
(`is_decoder`, `add_cross_attention`) and the sequence classifier (its head's activation is hidden_act, which the
pooler does not take)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .activations import hf_activation
from .bert import BERT_ACTIVATIONS, RULES
from .bert import to_config as bert_config
from .hf import FAMILIES, Family
from .mapping import Rule

TOKENS = [Rule.of(f"classifier.{w}", f"classifier.{w}") for w in ("weight", "bias")]
# the decoder's bias is cls.predictions.bias again; buffers; BigBirdForMaskedLM keeps BigBirdModel's pooler
IGNORE = (r"^cls\.predictions\.decoder\.bias$", r"embeddings\.(position|token_type)_ids$", r"^bert\.pooler\.")
_KINDS = {"block_sparse": "bigbird", "original_full": "full"}


def to_config(hf: dict) -> ModelConfig:
    if hf.get("is_decoder") or hf.get("add_cross_attention"):
        raise LlmarchError("big_bird: the decoder forms (is_decoder, add_cross_attention) are not supported")
    kind = hf.get("attention_type", "block_sparse")
    if kind not in _KINDS:
        raise LlmarchError(f"big_bird: unknown attention_type {kind!r} (block_sparse or original_full)")
    cfg = bert_config({"hidden_act": "gelu_new", "max_position_embeddings": 4096, **hf})
    return cfg.replace(name=hf.get("_name_or_path") or "big_bird", hf_model_type="big_bird", attention=_KINDS[kind],
                       attention_block=hf.get("block_size", 64), random_blocks=hf.get("num_random_blocks", 3),
                       qkv_bias=hf.get("use_bias", True), embed_scale=hf.get("rescale_embeddings", False),
                       pad_id=hf.get("pad_token_id") or 0)


def needs(cfg: ModelConfig) -> str | None:
    if cfg.attention not in _KINDS.values() or cfg.mixer != "attention" or cfg.layer_types is not None \
            or cfg.norm_placement != "post" or cfg.position_offset or cfg.positions != "learned" or not cfg.bias \
            or cfg.ffn not in BERT_ACTIVATIONS.values() or not cfg.embed_norm or cfg.embed_width != cfg.d_model \
            or cfg.n_kv_heads != cfg.n_heads or cfg.head == "lm" and not (cfg.head_transform and cfg.head_bias):
        return ("attention 'bigbird' or 'full' in every layer of a post-norm encoder with biases (q, k, v's may be "
                "off), learned positions from 0, an embedding norm, and BERT's MLM head")
    return None


def from_config(cfg: ModelConfig) -> dict:
    kind = {v: k for k, v in _KINDS.items()}[cfg.attention]
    return dict(model_type="big_bird", architectures=["BigBirdForMaskedLM"], vocab_size=cfg.vocab_size,
                hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
                intermediate_size=cfg.ffn_hidden, hidden_act=hf_activation(cfg.ffn),
                layer_norm_eps=cfg.norm_eps, type_vocab_size=cfg.type_vocab_size,
                max_position_embeddings=cfg.context_length, tie_word_embeddings=cfg.tie_embeddings,
                attention_type=kind, block_size=cfg.attention_block, num_random_blocks=cfg.random_blocks,
                use_bias=cfg.qkv_bias, rescale_embeddings=cfg.embed_scale, pad_token_id=cfg.pad_id)


FAMILIES.register("big_bird")(Family(RULES, to_config, from_config, IGNORE, needs=needs,
                                     heads={"tokens": ("BigBirdForTokenClassification", TOKENS)},
                                     base_prefix="bert."))
