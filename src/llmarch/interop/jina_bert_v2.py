"""JinaBERT-v2 (Günther et al. 2023, "Jina Embeddings 2: 8192-Token General-Purpose Text Embeddings for Long
Documents", arXiv 2310.19923): BERT's post-norm encoder with symmetric ALiBi in place of the position table (head h
adds -m_h |i - j| to every score, `alibi_symmetric`) and a GEGLU MLP. transformers has no JinaBERT-v2 (its
checkpoints say model_type `bert` and run Jina's remote code, JinaBertModel), so this table, under llmarch's own
model_type `jina_bert_v2`, is the layout llama.cpp's converter (JinaBertV2Model) reads: BERT's names for the
embeddings (no position table) and attention, `mlp.gated_layers` the fused gate | up projection without a bias (rows:
gate, then up; GELU on the gate), `mlp.wo` the down projection, `mlp.layernorm` the block's second LayerNorm; BERT's
MLM head. Config: BERT's fields, `position_embedding_type: alibi`, `feed_forward_type: geglu`. Heads: the masked LM
(JinaBertForMaskedLM); JinaBertModel reads as head `embed`."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, RETYPED, Family
from .mapping import Rule

_W = ("weight", "bias")
_E, _L = "bert.embeddings.", "bert.encoder.layer.{i}."
_LAYER = [("attention.output.dense", "attn.o_proj"), ("attention.output.LayerNorm", "ln1"), ("mlp.wo", "mlp.down"),
          ("mlp.layernorm", "ln2")]
RULES = [
    Rule.of(_E + "word_embeddings.weight", "embed.weight"),
    Rule.of(_E + "token_type_embeddings.weight", "token_types.weight"),
    *[Rule.of(_E + f"LayerNorm.{w}", f"embed_norm.{w}") for w in _W],
    *[Rule.of(tuple(_L + f"attention.self.{p}.{w}" for p in ("query", "key", "value")),
              f"blocks.{{i}}.attn.qkv_proj.{w}") for w in _W],
    *[Rule.of(_L + f"{hf}.{w}", f"blocks.{{i}}.{ours}.{w}") for hf, ours in _LAYER for w in _W],
    Rule.of(_L + "mlp.gated_layers.weight", "blocks.{i}.mlp.gate_up.weight"),
    *[Rule.of(f"cls.predictions.transform.dense.{w}", f"head_transform.dense.{w}") for w in _W],
    *[Rule.of(f"cls.predictions.transform.LayerNorm.{w}", f"head_transform.norm.{w}") for w in _W],
    Rule.of("cls.predictions.bias", "lm_head.bias"), Rule.of("cls.predictions.decoder.weight", "lm_head.weight"),
]
IGNORE = (r"^cls\.predictions\.decoder\.bias$",)


def to_config(hf: dict) -> ModelConfig:
    for key, want in (("position_embedding_type", "alibi"), ("feed_forward_type", "geglu"), ("hidden_act", "gelu")):
        if hf.get(key, want) != want:
            raise LlmarchError(f"jina_bert_v2 with {key} {hf[key]!r} is not supported ({want} only)")
    return ModelConfig(name=hf.get("_name_or_path") or "jina_bert_v2", hf_model_type="jina_bert_v2",
                       vocab_size=hf["vocab_size"], d_model=hf["hidden_size"], n_layers=hf["num_hidden_layers"],
                       n_heads=hf["num_attention_heads"], ffn="geglu", ffn_hidden=hf["intermediate_size"],
                       ffn_in_bias=False, norm="layernorm", norm_eps=hf.get("layer_norm_eps", 1e-12),
                       norm_placement="post", positions="alibi", alibi_symmetric=True, causal=False,
                       type_vocab_size=hf.get("type_vocab_size", 2), embed_norm=True, head_transform=True,
                       head_bias=True, tie_embeddings=hf.get("tie_word_embeddings", True),
                       pad_id=hf.get("pad_token_id") or 0, context_length=hf.get("max_position_embeddings", 8192))


def from_config(cfg: ModelConfig) -> dict:
    return dict(model_type="jina_bert_v2", architectures=["JinaBertForMaskedLM"], vocab_size=cfg.vocab_size,
                hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
                intermediate_size=cfg.ffn_hidden, hidden_act="gelu", layer_norm_eps=cfg.norm_eps,
                type_vocab_size=cfg.type_vocab_size, max_position_embeddings=cfg.context_length,
                position_embedding_type="alibi", feed_forward_type="geglu", tie_word_embeddings=cfg.tie_embeddings,
                pad_token_id=cfg.pad_id)


def needs(cfg: ModelConfig) -> str | None:
    if cfg.causal or cfg.positions != "alibi" or not cfg.alibi_symmetric or cfg.alibi_scale != 1.0 \
            or cfg.norm != "layernorm" or cfg.norm_placement != "post" or cfg.final_norm or not cfg.embed_norm \
            or cfg.ffn != "geglu" or cfg.ffn_in_bias or not (cfg.bias and cfg.qkv_bias and cfg.o_bias) \
            or cfg.n_kv_heads != cfg.n_heads or cfg.qk_norm != "none" \
            or cfg.head == "lm" and not (cfg.head_transform and cfg.head_bias and cfg.head_act in (None, "gelu")):
        return ("a bidirectional post-LayerNorm encoder with an embedding norm, symmetric ALiBi, MHA with biases, a "
                "GEGLU MLP whose gate | up has no bias, and BERT's MLM head")
    return None


FAMILIES.register("jina_bert_v2")(Family(RULES, to_config, from_config, IGNORE, needs=needs,
                                         heads={"embed": ("JinaBertModel", [])}, base_prefix="bert."))
# a published JinaBERT-v2 config says model_type `bert` (transformers' BertConfig has no ALiBi: its
# position_embedding_type is absolute or relative_key(_query)), so position_embedding_type `alibi` tells it apart
RETYPED.append(("bert", lambda hf: hf.get("position_embedding_type") == "alibi", "jina_bert_v2"))
