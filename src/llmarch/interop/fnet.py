"""FNet (`model_type: fnet`; Lee-Thorp et al. 2021, "FNet: Mixing Tokens with Fourier Transforms"): BERT's
post-norm encoder with each self-attention sublayer replaced by an unparameterised 2-D Fourier transform, keeping
its real part (mixer 'fourier', layers/fourier.py): x = LN(x + Re(FFT(x))) (`fourier.output.LayerNorm`, our ln1),
then BERT's FFN. The embeddings (token, learned positions from 0, four token types, LayerNorm) are projected by
`embeddings.projection` at equal widths (our embed_proj). Heads: the masked LM (BERT's, tied decoder and its bias),
the pooler + classifier, the per-token classifier; FNetModel reads as head `embed`. transformers' FNet takes no
attention mask: padding is transformed with the rest. use_tpu_fourier_optimizations (the same transform as DFT
matrix products) is read as the FFT; exported as False."""
from __future__ import annotations

from ..config import ModelConfig
from .activations import exportable, hf_activation, read_activation
from .bert import head_rules
from .hf import FAMILIES, Family
from .mapping import Rule

_W = ("weight", "bias")
_E, _L = "fnet.embeddings.", "fnet.encoder.layer.{i}."
_LAYER = [("fourier.output.LayerNorm", "ln1"), ("intermediate.dense", "mlp.up"), ("output.dense", "mlp.down"),
          ("output.LayerNorm", "ln2")]
_HEAD = "cls.predictions."
RULES = [
    Rule.of(_E + "word_embeddings.weight", "embed.weight"),
    Rule.of(_E + "position_embeddings.weight", "positions.weight"),
    Rule.of(_E + "token_type_embeddings.weight", "token_types.weight"),
    *[Rule.of(_E + f"LayerNorm.{w}", f"embed_norm.{w}") for w in _W],
    *[Rule.of(_E + f"projection.{w}", f"embed_proj.{w}") for w in _W],
    *[Rule.of(_L + f"{hf}.{w}", f"blocks.{{i}}.{ours}.{w}") for hf, ours in _LAYER for w in _W],
    *[Rule.of(_HEAD + f"transform.dense.{w}", f"head_transform.dense.{w}") for w in _W],
    *[Rule.of(_HEAD + f"transform.LayerNorm.{w}", f"head_transform.norm.{w}") for w in _W],
    Rule.of(_HEAD + "bias", "lm_head.bias"),
    Rule.of(_HEAD + "decoder.weight", "lm_head.weight"),
]
HEADS = head_rules("fnet.pooler.dense", "classifier", "classifier")
# the decoder's bias is cls.predictions.bias again; position_ids, token_type_ids and the DFT matrices are buffers;
# FNetForMaskedLM keeps FNetModel's pooler, which only the classifier reads
IGNORE = (r"^cls\.predictions\.decoder\.bias$", r"embeddings\.(position|token_type)_ids$",
          r"dft_mat_(hidden|seq)$", r"^fnet\.pooler\.")


def to_config(hf: dict) -> ModelConfig:
    return ModelConfig(name=hf.get("_name_or_path") or "fnet", hf_model_type="fnet", vocab_size=hf["vocab_size"],
                       d_model=hf["hidden_size"], n_layers=hf["num_hidden_layers"], n_heads=1, mixer="fourier",
                       ffn=read_activation(hf, "fnet", "hidden_act", "gelu_new"), ffn_hidden=hf["intermediate_size"],
                       norm="layernorm",
                       norm_eps=hf.get("layer_norm_eps", 1e-12), norm_placement="post", positions="learned",
                       causal=False, type_vocab_size=hf.get("type_vocab_size", 4), embed_norm=True, embed_proj=True,
                       head_transform=True, head_bias=True, tie_embeddings=hf.get("tie_word_embeddings", True),
                       context_length=hf.get("max_position_embeddings", 512), pad_id=hf.get("pad_token_id") or 0)


def needs(cfg: ModelConfig) -> str | None:
    if cfg.mixer != "fourier" or cfg.attn_period or cfg.layer_types is not None or cfg.norm_placement != "post" \
            or not cfg.embed_proj or cfg.embed_width != cfg.d_model or not cfg.embed_norm \
            or cfg.positions != "learned" or cfg.position_offset or not cfg.bias or not exportable(cfg.ffn) \
            or cfg.n_experts or cfg.head == "lm" and not (cfg.head_transform and cfg.head_bias):
        return ("mixer='fourier' in every layer of a post-norm encoder with biases, learned positions from 0, an "
                "embedding norm and projection (embed_proj) at d_model, and BERT's MLM head")
    return None


def from_config(cfg: ModelConfig) -> dict:
    return dict(model_type="fnet", architectures=["FNetForMaskedLM"], vocab_size=cfg.vocab_size,
                hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers, intermediate_size=cfg.ffn_hidden,
                hidden_act=hf_activation(cfg.ffn), layer_norm_eps=cfg.norm_eps,
                type_vocab_size=cfg.type_vocab_size, max_position_embeddings=cfg.context_length,
                tie_word_embeddings=cfg.tie_embeddings, pad_token_id=cfg.pad_id, use_tpu_fourier_optimizations=False)


FAMILIES.register("fnet")(Family(RULES, to_config, from_config, IGNORE, needs=needs, heads={
    "classify": ("FNetForSequenceClassification", HEADS["classify"]),
    "tokens": ("FNetForTokenClassification", HEADS["tokens"])}, base_prefix="fnet."))
