"""MobileBERT (`model_type: mobilebert`; Sun et al. 2020, "MobileBERT: a Compact Task-Agnostic BERT for
Resource-Limited Devices"): a post-norm encoder whose blocks are bottlenecked (layers/bottleneck.py: mixer
'bottleneck'), with
- embeddings of embedding_size (our embed_dim) widened to hidden_size before the positions and token types join
  them (layers/input_proj.py): with trigram_input each token's embedding beside its next and previous tokens'
  (embed_input 'trigram'), else a projection (embed_input 'project');
- blocks: the input bottleneck to intra_bottleneck_size (our bottleneck_dim); queries and keys from a second
  bottleneck and values from the block's input (key_query_shared_bottleneck: bottleneck_qkv 'shared_qk'), or all
  three from the inner stream (use_bottleneck_attention: 'inner'); num_feedforward_networks post-norm FFNs (our
  bottleneck_ffns; the first num - 1 are `ffn.{j}`, the last the layer's `intermediate` and `output`); the output
  bottleneck's dense and norm, x = n(x + h W_out): the block's ln1;
- normalization_type no_norm: NoNorm, y = x * g + b (our 'affine' norm), everywhere but the MLM head's transform,
  which is a LayerNorm whatever it says (head_norm);
- the MLM head: dense -> hidden_act -> LayerNorm, then logits = h [E^T; D] + b, E the tied word embeddings
  (embedding_size wide) and D the head's own `cls.predictions.dense` for the hidden_size - embedding_size features
  past them (head_extra); the pooler (dense + tanh on the first token) + classifier; a per-token classifier.
Refused: use_bottleneck false (blocks at hidden_size with no bottleneck), normalization_type layer_norm with a
layer_norm_eps other than 1e-5 (transformers builds some of those LayerNorms with the default 1e-5 and some with
layer_norm_eps), embedding_size >= hidden_size (no features left for D), classifier_activation false (a pooler
without its dense layer)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .activations import exportable, hf_activation, read_activation
from .bert import _W
from .hf import FAMILIES, Family
from .mapping import Rule

_E, _L, _M = "mobilebert.embeddings.", "mobilebert.encoder.layer.{i}.", "blocks.{i}.mixer."
_LAYER = [("bottleneck.input.dense", "in_proj"), ("bottleneck.input.LayerNorm", "in_norm"),
          ("attention.self.query", "q_proj"), ("attention.self.key", "k_proj"), ("attention.self.value", "v_proj"),
          ("attention.output.dense", "o_proj"), ("attention.output.LayerNorm", "attn_norm"),
          ("output.bottleneck.dense", "out_proj")]
RULES = [
    Rule.of(_E + "word_embeddings.weight", "embed.weight"),
    Rule.of(_E + "position_embeddings.weight", "positions.weight"),
    Rule.of(_E + "token_type_embeddings.weight", "token_types.weight"),
    *[Rule.of(_E + f"embedding_transformation.{w}", f"input_proj.proj.{w}") for w in _W],
    *[Rule.of(_E + f"LayerNorm.{w}", f"embed_norm.{w}") for w in _W],
    *[Rule.of(_L + f"{hf}.{w}", _M + f"{ours}.{w}") for hf, ours in _LAYER for w in _W],
    *[Rule.of(_L + f"output.bottleneck.LayerNorm.{w}", f"blocks.{{i}}.ln1.{w}") for w in _W],
    *[Rule.of(f"cls.predictions.transform.dense.{w}", f"head_transform.dense.{w}") for w in _W],
    *[Rule.of(f"cls.predictions.transform.LayerNorm.{w}", f"head_transform.norm.{w}") for w in _W],
    Rule.of("cls.predictions.bias", "lm_head.bias"), Rule.of("cls.predictions.decoder.weight", "lm_head.weight"),
    Rule.of("cls.predictions.dense.weight", "lm_head_extra.weight", "transposed"),  # stored (H - E, V)
]
HEADS = {"classify": [*[Rule.of(f"mobilebert.pooler.dense.{w}", f"pooler.dense.{w}") for w in _W],
                      *[Rule.of(f"classifier.{w}", f"classifier.{w}") for w in _W]],
         "tokens": [Rule.of(f"classifier.{w}", f"classifier.{w}") for w in _W]}
# the decoder's bias is cls.predictions.bias again; with use_bottleneck_attention transformers still builds (and saves)
# the query-key bottleneck when key_query_shared_bottleneck is set, and never reads it
IGNORE = (r"^cls\.predictions\.decoder\.bias$", r"embeddings\.position_ids$", r"\.bottleneck\.attention\.")


def more_rules(cfg: ModelConfig) -> list[Rule]:
    """The shared query-key bottleneck's, and each FFN's: the first bottleneck_ffns - 1 under `ffn.{j}`, the last the
    layer's own intermediate and output."""
    n = cfg.bottleneck_ffns
    names = [(f"ffn.{j}.intermediate.dense", f"ffn.{j}.output.dense", f"ffn.{j}.output.LayerNorm")
             for j in range(n - 1)] + [("intermediate.dense", "output.dense", "output.LayerNorm")]
    shared = [("bottleneck.attention.dense", "qk_proj"), ("bottleneck.attention.LayerNorm", "qk_norm")] \
        if cfg.bottleneck_qkv == "shared_qk" else []
    pairs = shared + [pair for j, (up, down, norm) in enumerate(names)
                      for pair in ((up, f"ffns.{j}.up"), (down, f"ffns.{j}.down"), (norm, f"ffn_norms.{j}"))]
    return [Rule.of(_L + f"{hf}.{w}", _M + f"{ours}.{w}") for hf, ours in pairs for w in _W]


def to_config(hf: dict) -> ModelConfig:
    hidden, embed = hf.get("hidden_size", 512), hf.get("embedding_size", 128)
    norm, eps = hf.get("normalization_type", "no_norm"), hf.get("layer_norm_eps", 1e-12)
    if not hf.get("use_bottleneck", True) or norm not in ("no_norm", "layer_norm") \
            or norm == "layer_norm" and eps != 1e-5 or embed >= hidden or not hf.get("classifier_activation", True):
        raise LlmarchError("MobileBERT with use_bottleneck false, normalization_type other than no_norm (or "
                           "layer_norm with layer_norm_eps 1e-5), embedding_size >= hidden_size or "
                           "classifier_activation false is not supported")
    inner, heads = hf.get("intra_bottleneck_size", 128), hf.get("num_attention_heads", 4)
    qkv = "inner" if hf.get("use_bottleneck_attention", False) else \
        "shared_qk" if hf.get("key_query_shared_bottleneck", True) else "input"
    return ModelConfig(
        name=hf.get("_name_or_path") or "mobilebert", hf_model_type="mobilebert", vocab_size=hf["vocab_size"],
        d_model=hidden, n_layers=hf.get("num_hidden_layers", 24), n_heads=heads, head_dim=inner // heads,
        ffn=read_activation(hf, "mobilebert", "hidden_act", "relu"), ffn_hidden=hf.get("intermediate_size", 512),
        norm="affine" if norm == "no_norm" else "layernorm", norm_eps=eps, head_norm="layernorm",
        norm_placement="post", positions="learned", causal=False, type_vocab_size=hf.get("type_vocab_size", 2),
        embed_dim=embed, embed_input="trigram" if hf.get("trigram_input", True) else "project", embed_norm=True,
        mixer="bottleneck", bottleneck_dim=inner, bottleneck_qkv=qkv,
        bottleneck_ffns=hf.get("num_feedforward_networks", 4), head_transform=True, head_bias=True, head_extra=True,
        tie_embeddings=hf.get("tie_word_embeddings", True), context_length=hf.get("max_position_embeddings", 512),
        pad_id=hf.get("pad_token_id") or 0)


def needs(cfg: ModelConfig) -> str | None:
    if cfg.mixer != "bottleneck" or cfg.layer_types is not None or cfg.norm not in ("affine", "layernorm") \
            or cfg.norm == "layernorm" and cfg.norm_eps != 1e-5 or cfg.embed_input == "token" or not cfg.embed_norm \
            or cfg.position_offset or cfg.positions != "learned" or not cfg.bias or not exportable(cfg.ffn) \
            or cfg.n_heads * cfg.head_dim != cfg.bottleneck_dim or cfg.pooler_act != "tanh" \
            or cfg.bottleneck_qkv == "input" and cfg.bottleneck_dim != cfg.d_model \
            or cfg.head == "lm" and not (cfg.head_extra and cfg.head_bias and cfg.head_norm == "layernorm"):
        return ("the bottleneck mixer in every layer with NoNorm (or LayerNorm of eps 1e-5), learned positions from 0, "
                "embeddings projected before them, biases, heads splitting bottleneck_dim (of d_model where attention "
                "reads the block's input: transformers' queries and keys are bottleneck_dim wide), and MobileBERT's "
                "MLM head")
    return None


def from_config(cfg: ModelConfig) -> dict:
    return dict(model_type="mobilebert", architectures=["MobileBertForMaskedLM"], vocab_size=cfg.vocab_size,
                hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
                intermediate_size=cfg.ffn_hidden, hidden_act=hf_activation(cfg.ffn),
                layer_norm_eps=cfg.norm_eps, normalization_type="no_norm" if cfg.norm == "affine" else "layer_norm",
                type_vocab_size=cfg.type_vocab_size, max_position_embeddings=cfg.context_length,
                embedding_size=cfg.embed_width, trigram_input=cfg.embed_input == "trigram", use_bottleneck=True,
                intra_bottleneck_size=cfg.bottleneck_dim, use_bottleneck_attention=cfg.bottleneck_qkv == "inner",
                key_query_shared_bottleneck=cfg.bottleneck_qkv == "shared_qk",
                num_feedforward_networks=cfg.bottleneck_ffns, classifier_activation=True, pad_token_id=cfg.pad_id,
                tie_word_embeddings=cfg.tie_embeddings)


FAMILIES.register("mobilebert")(Family(RULES, to_config, from_config, IGNORE, heads={
    "classify": ("MobileBertForSequenceClassification", HEADS["classify"]),
    "tokens": ("MobileBertForTokenClassification", HEADS["tokens"])}, base_prefix="mobilebert.", needs=needs,
    more_rules=more_rules))
