"""XLM (`model_type: xlm`; Lample & Conneau 2019, "Cross-lingual Language Model Pretraining") read as the masked LM
it was trained as: token + learned positions (sinusoidal_embeddings: the sinusoids stored in the same table, read as
they are stored) + a language embedding per token (`lang_embeddings`, n_langs > 1 with use_lang_emb: our
`lang_vocab_size`, fed lang_ids, transformers' `langs`), an embedding LayerNorm, post-norm blocks (q/k/v/out_lin,
ffns of 4 x emb_dim, GELU or ReLU by gelu_activation) and `pred_layer.proj` (tied, with a bias). Heads:
XLMWithLMHeadModel, XLMForSequenceClassification (its sequence summary: the first token's state through one
linear layer, our classify head with pooler=False), XLMForTokenClassification, and XLMModel as an embedding model.

Refused: `asm` (an adaptive log-softmax output, Grave et al. 2017, which llmarch lacks), the summaries other than
the first token projected to the labels (the last or mean summaries read padding as transformers computes them),
and `causal`: transformers lists XLMWithLMHeadModel as a causal LM, but its `generate` appends a mask token and
reads the logits there at every step, re-encoding the whole prefix (a masked-LM fill, no next-token distribution a
KV cache could continue), and its causal attention leaves padding unmasked. FlauBERT (flaubert.py) is this family
with pre-norm blocks."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .mapping import Rule

_W = ("weight", "bias")
_LAYER = [("attentions.{i}.out_lin", "attn.o_proj"), ("layer_norm1.{i}", "ln1"), ("ffns.{i}.lin1", "mlp.up"),
          ("ffns.{i}.lin2", "mlp.down"), ("layer_norm2.{i}", "ln2")]
RULES = [
    Rule.of("transformer.embeddings.weight", "embed.weight"),
    Rule.of("transformer.position_embeddings.weight", "positions.weight"),
    *[Rule.of(f"transformer.layer_norm_emb.{w}", f"embed_norm.{w}") for w in _W],
    *[Rule.of(tuple(f"transformer.attentions.{{i}}.{p}_lin.{w}" for p in "qkv"), f"blocks.{{i}}.attn.qkv_proj.{w}")
      for w in _W],
    *[Rule.of(f"transformer.{hf}.{w}", f"blocks.{{i}}.{ours}.{w}") for hf, ours in _LAYER for w in _W],
    Rule.of("pred_layer.proj.weight", "lm_head.weight"),
    Rule.of("pred_layer.proj.bias", "lm_head.bias"),
]
# older files store the tied head too, holding the embedding again (read where the head is untied)
IGNORE = (r"position_ids$", r"^pred_layer\.proj\.weight$")
_SUMMARY = dict(summary_type="first", summary_use_proj=True, summary_proj_to_labels=True, summary_activation=None)


def more_rules(cfg: ModelConfig) -> list[Rule]:
    return [Rule.of("transformer.lang_embeddings.weight", "lang_embed.weight")] if cfg.lang_vocab_size else []


def xlm_config(hf: dict) -> ModelConfig:
    """XLM's and FlauBERT's common fields (post-norm blocks; flaubert.py sets pre_norm's)."""
    name = hf["model_type"]
    if hf.get("asm", False):
        raise LlmarchError(f"{name} with asm (an adaptive log-softmax output layer) is not supported")
    if hf.get("causal", False):
        raise LlmarchError(f"{name} with causal=true is not supported: transformers generates from it by appending "
                           "a mask token and re-encoding the prefix, no next-token LM a KV cache continues")
    if not hf.get("is_encoder", True):
        raise LlmarchError(f"{name} with is_encoder=false is not supported (transformers cannot build it either)")
    arch = (hf.get("architectures") or [""])[0]
    if "QuestionAnswering" in arch or "MultipleChoice" in arch:
        raise LlmarchError(f"{arch} checkpoints are not supported (heads: lm, classify, tokens)")
    if arch.endswith("ForSequenceClassification") and any(hf.get(k, v) != v for k, v in _SUMMARY.items()):
        raise LlmarchError(f"{name}: a sequence summary other than the first token through one linear layer to the "
                           f"labels ({', '.join(f'{k}={v}' for k, v in _SUMMARY.items())}) is not supported")
    d = hf["emb_dim"]
    langs = int(hf.get("n_langs", 1))
    return ModelConfig(
        name=hf.get("_name_or_path") or name, hf_model_type=name, vocab_size=hf.get("vocab_size", hf.get("n_words")),
        d_model=d, n_layers=hf["n_layers"], n_heads=hf["n_heads"], ffn="gelu" if hf.get("gelu_activation", True)
        else "relu", ffn_hidden=4 * d, norm="layernorm", norm_eps=hf.get("layer_norm_eps", 1e-12),
        norm_placement="post", positions="learned", causal=False, embed_norm=True, head_bias=True,
        tie_embeddings=hf.get("tie_word_embeddings", True), context_length=hf.get("max_position_embeddings", 512),
        lang_vocab_size=langs if langs > 1 and hf.get("use_lang_emb", True) else 0, pooler=False)


def needs(cfg: ModelConfig) -> str | None:
    if cfg.norm_placement not in ("post", "pre") or cfg.final_norm or not cfg.embed_norm or cfg.head_transform \
            or cfg.head == "lm" and not cfg.head_bias or cfg.ffn not in ("gelu", "relu") \
            or cfg.ffn_hidden != 4 * cfg.d_model or cfg.positions != "learned" or cfg.position_offset \
            or cfg.type_vocab_size or cfg.head == "classify" and cfg.pooler or cfg.token_proj \
            or cfg.embed_width != cfg.d_model or not cfg.bias or cfg.n_kv_heads != cfg.n_heads:
        return ("post- or pre-norm blocks without a final norm, an embedding LayerNorm, a GELU or ReLU MLP of "
                "4 x d_model, learned positions from 0, no token types, an LM head with a bias and no transform, "
                "a classifier reading the first token without a pooler")
    return None


def xlm_hf(cfg: ModelConfig, prefix: str) -> dict:
    """config.json of XLM or FlauBERT (architecture prefix `prefix`), without pre_norm."""
    return dict(model_type=cfg.hf_model_type, architectures=[f"{prefix}WithLMHeadModel"], vocab_size=cfg.vocab_size,
                emb_dim=cfg.d_model, n_layers=cfg.n_layers, n_heads=cfg.n_heads, gelu_activation=cfg.ffn == "gelu",
                sinusoidal_embeddings=False, causal=False, asm=False, n_langs=max(cfg.lang_vocab_size, 1),
                use_lang_emb=cfg.lang_vocab_size > 0, max_position_embeddings=cfg.context_length,
                layer_norm_eps=cfg.norm_eps, is_encoder=True, tie_word_embeddings=cfg.tie_embeddings, **_SUMMARY)


def from_config(cfg: ModelConfig) -> dict:
    if cfg.norm_placement != "post":
        raise LlmarchError("model_type xlm has post-norm blocks (pre-norm ones are FlauBERT's pre_norm)")
    return xlm_hf(cfg, "XLM")


def family(to_config, from_config, prefix: str) -> Family:
    return Family(RULES, to_config, from_config, IGNORE, heads={
        "classify": (f"{prefix}ForSequenceClassification",
                     [Rule.of(f"sequence_summary.summary.{w}", f"classifier.{w}") for w in _W]),
        "tokens": (f"{prefix}ForTokenClassification", [Rule.of(f"classifier.{w}", f"classifier.{w}") for w in _W])},
        base_prefix="transformer.", needs=needs, more_rules=more_rules)


FAMILIES.register("xlm")(family(xlm_config, from_config, "XLM"))
