"""BERT (`model_type: bert`): learned absolute positions plus token-type embeddings under a LayerNorm,
post-norm blocks with bidirectional attention, exact-GELU MLP. Heads: the MLM head (BertForMaskedLM:
dense -> GELU -> LayerNorm -> tied projection + bias), the pooler + classifier (BertForSequenceClassification)
and a per-token classifier (BertForTokenClassification). With `is_decoder` (BertLMHeadModel) the same stack has
causal attention and the MLM head is the LM head."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .activations import HF_ACTIVATIONS, hf_activation, read_activation
from .hf import FAMILIES, Family
from .mapping import Rule

_LAYER = [("attention.output.dense", "attn.o_proj"), ("attention.output.LayerNorm", "ln1"),
          ("intermediate.dense", "mlp.up"), ("output.dense", "mlp.down"), ("output.LayerNorm", "ln2")]
_W = ("weight", "bias")


def encoder_rules(root: str, head: str, dense: str, norm: str, bias: str) -> list[Rule]:
    """BERT-layout rules under `root` (bert / roberta) with the MLM head's module names."""
    return [
        *body_rules(root),
        *[Rule.of(f"{head}.{dense}.{w}", f"head_transform.dense.{w}") for w in _W],
        *[Rule.of(f"{head}.{norm}.{w}", f"head_transform.norm.{w}") for w in _W],
        Rule.of(f"{head}.{bias}", "lm_head.bias"),
        Rule.of(f"{head}.decoder.weight", "lm_head.weight"),
    ]


def body_rules(root: str) -> list[Rule]:
    """The embeddings and blocks of a BERT-layout encoder under `root`, without a head."""
    e, layer = f"{root}.embeddings.", f"{root}.encoder.layer.{{i}}."
    return [
        Rule.of(e + "word_embeddings.weight", "embed.weight"),
        Rule.of(e + "position_embeddings.weight", "positions.weight"),
        Rule.of(e + "token_type_embeddings.weight", "token_types.weight"),
        *[Rule.of(e + f"LayerNorm.{w}", f"embed_norm.{w}") for w in _W],
        *[Rule.of(tuple(layer + f"attention.self.{p}.{w}" for p in ("query", "key", "value")),
                  f"blocks.{{i}}.attn.qkv_proj.{w}") for w in _W],
        *[Rule.of(layer + f"{hf}.{w}", f"blocks.{{i}}.{ours}.{w}") for hf, ours in _LAYER for w in _W],
    ]


def head_rules(pooler: str, classifier: str, token_classifier: str) -> dict[str, list[Rule]]:
    """Rules of the classify head (pooler dense + classifier) and the tokens head (classifier)."""
    return {"classify": [*[Rule.of(f"{pooler}.{w}", f"pooler.dense.{w}") for w in _W],
                         *[Rule.of(f"{classifier}.{w}", f"classifier.{w}") for w in _W]],
            "tokens": [Rule.of(f"{token_classifier}.{w}", f"classifier.{w}") for w in _W]}


RULES = encoder_rules("bert", "cls.predictions", "transform.dense", "transform.LayerNorm", "bias")
HEADS = head_rules("bert.pooler.dense", "classifier", "classifier")
# the decoder's bias is cls.predictions.bias again; position_ids is a stored buffer in older files
IGNORE = (r"^cls\.predictions\.decoder\.bias$", r"embeddings\.position_ids$")
# BERT computes any ACT2FN name, but RoBERTa's LM head (roberta.py and the families on it, which read their
# configs here) applies exact GELU whatever hidden_act: the names read before the shared table, not all of it
BERT_ACTIVATIONS = {name: HF_ACTIVATIONS[name] for name in ("gelu", "gelu_new", "relu")}


def to_config(hf: dict) -> ModelConfig:
    positions = hf.get("position_embedding_type", "absolute")
    if positions != "absolute":  # relative_key(_query): Shaw et al. 2018's distance embeddings, which llmarch lacks
        raise LlmarchError(f"BERT with position_embedding_type {positions!r} is not supported (absolute only)")
    return ModelConfig(name=hf.get("_name_or_path") or "bert", hf_model_type="bert", vocab_size=hf["vocab_size"],
                       d_model=hf["hidden_size"], n_layers=hf["num_hidden_layers"], n_heads=hf["num_attention_heads"],
                       ffn=read_activation(hf, hf.get("model_type") or "bert", "hidden_act", "gelu", BERT_ACTIVATIONS),
                       ffn_hidden=hf["intermediate_size"], norm="layernorm",
                       norm_eps=hf.get("layer_norm_eps", 1e-12), norm_placement="post", positions="learned",
                       causal=bool(hf.get("is_decoder", False)), type_vocab_size=hf.get("type_vocab_size", 2), embed_norm=True,
                       head_transform=True, head_bias=True, tie_embeddings=hf.get("tie_word_embeddings", True),
                       context_length=hf.get("max_position_embeddings", 512))


def from_config(cfg: ModelConfig) -> dict:
    if cfg.head == "lm" and cfg.head_act not in (None, cfg.ffn):
        raise LlmarchError(f"bert's MLM head applies hidden_act ({cfg.ffn}): a head activation {cfg.head_act!r} "
                           "cannot be written")
    return dict(model_type="bert", architectures=["BertLMHeadModel" if cfg.causal else "BertForMaskedLM"],
                is_decoder=cfg.causal, vocab_size=cfg.vocab_size,
                hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
                intermediate_size=cfg.ffn_hidden, hidden_act=hf_activation(cfg.ffn),
                layer_norm_eps=cfg.norm_eps, type_vocab_size=cfg.type_vocab_size,
                max_position_embeddings=cfg.context_length, tie_word_embeddings=cfg.tie_embeddings)


def kind_encoder_needs(cfg: ModelConfig, attention: str, offset: int) -> str | None:
    """Why cfg is not BERT's post-norm encoder with attention kind `attention` in every layer and learned positions
    from `offset` (Nystromformer's and YOSO's layout), or None."""
    if cfg.attention != attention or cfg.mixer != "attention" or cfg.layer_types is not None \
            or cfg.norm_placement != "post" or cfg.position_offset != offset or cfg.positions != "learned" \
            or not cfg.bias or cfg.ffn not in BERT_ACTIVATIONS.values() or not cfg.embed_norm \
            or cfg.embed_width != cfg.d_model \
            or cfg.head == "lm" and not (cfg.head_transform and cfg.head_bias):
        return (f"attention={attention!r} in every layer of a post-norm encoder with biases, learned positions from "
                f"{offset}, an embedding norm, and BERT's MLM head")
    return None


FAMILIES.register("bert")(Family(RULES, to_config, from_config, IGNORE, heads={
    "classify": ("BertForSequenceClassification", HEADS["classify"]),
    "tokens": ("BertForTokenClassification", HEADS["tokens"])}, base_prefix="bert."))
