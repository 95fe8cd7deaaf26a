"""ConvBERT (`model_type: convbert`; Jiang et al. 2020, "ConvBERT: Improving BERT with Span-based Dynamic
Convolution"): ELECTRA's layout (electra.py: embeddings of their own width projected by `embeddings_project`, the
generator's MLM head `generator_predictions` + `generator_lm_head`) under `convbert.`, its post-norm blocks mixing
with mixed attention (layers/mixed_attention.py: half self-attention heads, half span-based dynamic convolution
heads; `head_ratio`, `conv_kernel_size`). Heads: the MLM head only. Refused: num_groups > 1 (grouped linear FFNs),
is_decoder, a hidden_act other than gelu (the MLM head applies GELU beside it)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .bert import _W
from .electra import IGNORE
from .electra import to_config as electra_config
from .electra import from_config as electra_hf
from .hf import FAMILIES, Family
from .mapping import Rule

_E, _L, _S = "convbert.embeddings.", "convbert.encoder.layer.{i}.", "convbert.encoder.layer.{i}.attention.self."
_MIXER = [("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj"), ("conv_kernel_layer", "kernel_proj"),
          ("conv_out_layer", "conv_proj")]
_LAYER = [("attention.output.dense", "mixer.o_proj"), ("attention.output.LayerNorm", "ln1"),
          ("intermediate.dense", "mlp.up"), ("output.dense", "mlp.down"), ("output.LayerNorm", "ln2")]
RULES = [
    Rule.of(_E + "word_embeddings.weight", "embed.weight"),
    Rule.of(_E + "position_embeddings.weight", "positions.weight"),
    Rule.of(_E + "token_type_embeddings.weight", "token_types.weight"),
    *[Rule.of(_E + f"LayerNorm.{w}", f"embed_norm.{w}") for w in _W],
    *[Rule.of(f"convbert.embeddings_project.{w}", f"embed_proj.{w}") for w in _W],
    *[Rule.of(_S + f"{hf}.{w}", f"blocks.{{i}}.mixer.{ours}.{w}") for hf, ours in _MIXER for w in _W],
    *[Rule.of(_S + f"key_conv_attn_layer.{p}", f"blocks.{{i}}.mixer.key_conv.{p}")
      for p in ("depthwise.weight", "pointwise.weight", "bias")],
    *[Rule.of(_L + f"{hf}.{w}", f"blocks.{{i}}.{ours}.{w}") for hf, ours in _LAYER for w in _W],
    *[Rule.of(f"generator_predictions.dense.{w}", f"head_transform.dense.{w}") for w in _W],
    *[Rule.of(f"generator_predictions.LayerNorm.{w}", f"head_transform.norm.{w}") for w in _W],
    *[Rule.of(f"generator_lm_head.{w}", f"lm_head.{w}") for w in _W],
]


def to_config(hf: dict) -> ModelConfig:
    if int(hf.get("num_groups", 1)) != 1 or hf.get("is_decoder", False):
        raise LlmarchError("ConvBERT with num_groups > 1 (grouped linear FFNs) or is_decoder is not supported")
    return electra_config(hf).replace(name=hf.get("_name_or_path") or "convbert", hf_model_type="convbert",
                                      mixer="mixed_attention", span_conv_kernel=int(hf.get("conv_kernel_size", 9)),
                                      span_conv_head_ratio=int(hf.get("head_ratio", 2)))


def needs(cfg: ModelConfig) -> str | None:
    if cfg.mixer != "mixed_attention" or cfg.norm_placement != "post" or cfg.final_norm or not cfg.embed_norm \
            or cfg.position_offset or cfg.positions != "learned" or cfg.head != "lm":
        return "mixed attention in BERT's post-norm blocks with learned positions from 0, and the MLM head"
    return None


def from_config(cfg: ModelConfig) -> dict:
    return {**electra_hf(cfg), "model_type": "convbert", "architectures": ["ConvBertForMaskedLM"],
            "conv_kernel_size": cfg.span_conv_kernel, "head_ratio": cfg.span_conv_head_ratio, "num_groups": 1}


FAMILIES.register("convbert")(Family(RULES, to_config, from_config, IGNORE, needs=needs))
