"""SqueezeBERT (`model_type: squeezebert`; Iandola et al. 2020, "SqueezeBERT: What can computer vision teach NLP
about efficient neural networks?"): BERT's post-norm encoder (the MLM head `cls.predictions`, pooler + classifier)
computed in a (B, C, T) layout with 1x1 convolutions in place of its position-wise linear layers, several of them
grouped (§3.2): q, k and v (`q_groups`, `k_groups`, `v_groups`: our qkv_groups), the FFN's up and down
(`intermediate_groups`, `output_groups`: our ffn_groups), attention's output (`post_attention_groups`) dense. A 1x1
convolution over positions is a linear layer on each token, so only the weights' trailing axis differs (layout
conv1x1). Refused: groups that differ among q, k and v or between the FFN's two projections, post_attention_groups
other than 1, and embedding_size other than hidden_size (transformers refuses it too)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .bert import _W
from .bert import from_config as bert_hf
from .bert import to_config as bert_config
from .hf import FAMILIES, Family
from .mapping import Rule

_E, _L = "transformer.embeddings.", "transformer.encoder.layers.{i}."
_QKV = tuple(_L + f"attention.{p}" for p in ("query", "key", "value"))
_CONV = [("post_attention.conv1d", "attn.o_proj"), ("intermediate.conv1d", "mlp.up"), ("output.conv1d", "mlp.down")]
_NORM = [("post_attention.layernorm", "ln1"), ("output.layernorm", "ln2")]
RULES = [
    Rule.of(_E + "word_embeddings.weight", "embed.weight"),
    Rule.of(_E + "position_embeddings.weight", "positions.weight"),
    Rule.of(_E + "token_type_embeddings.weight", "token_types.weight"),
    *[Rule.of(_E + f"LayerNorm.{w}", f"embed_norm.{w}") for w in _W],
    Rule.of(tuple(f"{n}.weight" for n in _QKV), "blocks.{i}.attn.qkv_proj.weight", "conv1x1"),
    Rule.of(tuple(f"{n}.bias" for n in _QKV), "blocks.{i}.attn.qkv_proj.bias"),
    *[Rule.of(_L + f"{hf}.weight", f"blocks.{{i}}.{ours}.weight", "conv1x1") for hf, ours in _CONV],
    *[Rule.of(_L + f"{hf}.bias", f"blocks.{{i}}.{ours}.bias") for hf, ours in _CONV],
    *[Rule.of(_L + f"{hf}.{w}", f"blocks.{{i}}.{ours}.{w}") for hf, ours in _NORM for w in _W],
    *[Rule.of(f"cls.predictions.transform.dense.{w}", f"head_transform.dense.{w}") for w in _W],
    *[Rule.of(f"cls.predictions.transform.LayerNorm.{w}", f"head_transform.norm.{w}") for w in _W],
    Rule.of("cls.predictions.bias", "lm_head.bias"), Rule.of("cls.predictions.decoder.weight", "lm_head.weight"),
]
HEADS = {"classify": [*[Rule.of(f"transformer.pooler.dense.{w}", f"pooler.dense.{w}") for w in _W],
                      *[Rule.of(f"classifier.{w}", f"classifier.{w}") for w in _W]],
         "tokens": [Rule.of(f"classifier.{w}", f"classifier.{w}") for w in _W]}
IGNORE = (r"^cls\.predictions\.decoder\.bias$", r"embeddings\.position_ids$", r"^transformer\.pooler\.")


def to_config(hf: dict) -> ModelConfig:
    qkv = {int(hf.get(f"{p}_groups", 4)) for p in "qkv"}
    ffn = {int(hf.get("intermediate_groups", 4)), int(hf.get("output_groups", 4))}
    if len(qkv) > 1 or len(ffn) > 1 or int(hf.get("post_attention_groups", 1)) != 1:
        raise LlmarchError("SqueezeBERT with q, k and v groups that differ, intermediate_groups other than "
                           "output_groups, or post_attention_groups other than 1 is not supported")
    if hf.get("embedding_size", hf["hidden_size"]) != hf["hidden_size"]:
        raise LlmarchError("SqueezeBERT with embedding_size other than hidden_size is not supported")
    return bert_config(hf).replace(name=hf.get("_name_or_path") or "squeezebert", hf_model_type="squeezebert",
                                   qkv_groups=qkv.pop(), ffn_groups=ffn.pop())


def needs(cfg: ModelConfig) -> str | None:
    if cfg.norm_placement != "post" or cfg.final_norm or not cfg.embed_norm or cfg.position_offset \
            or cfg.positions != "learned" or cfg.embed_width != cfg.d_model or cfg.mixer != "attention":
        return "BERT's post-norm attention blocks, embedding LayerNorm and learned positions from 0"
    return None


def from_config(cfg: ModelConfig) -> dict:
    g, f = cfg.qkv_groups, cfg.ffn_groups
    return {**bert_hf(cfg), "model_type": "squeezebert", "architectures": ["SqueezeBertForMaskedLM"],
            "embedding_size": cfg.d_model, "q_groups": g, "k_groups": g, "v_groups": g, "post_attention_groups": 1,
            "intermediate_groups": f, "output_groups": f}


FAMILIES.register("squeezebert")(Family(RULES, to_config, from_config, IGNORE, heads={
    "classify": ("SqueezeBertForSequenceClassification", HEADS["classify"]),
    "tokens": ("SqueezeBertForTokenClassification", HEADS["tokens"])}, base_prefix="transformer.", needs=needs))
