"""I-BERT (`model_type: ibert`; Kim et al. 2021, "I-BERT: Integer-only BERT Quantization"): RoBERTa (roberta.py's
layout under `ibert.`: positions from padding_idx + 1, its MLM and classification heads) whose layers can run in
integer-only arithmetic. With quant_mode false, as checkpoints are stored and fine-tuned before quantization, every
QuantLinear, QuantEmbedding and QuantAct is the float op it wraps and IntGELU, IntSoftmax and IntLayerNorm are exact
GELU, softmax and LayerNorm: the model is RoBERTa, which is what is read and written. The quantizers' buffers
(integer weights, scaling factors, activation ranges), unused in that mode, are not read. Refused: quant_mode true
(the integer kernels: i-GELU's polynomial erf, i-exp, integer square roots), and a hidden_act other than gelu (its
FFN applies IntGELU whatever hidden_act says)."""
from __future__ import annotations

from dataclasses import replace

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES
from .roberta import family
from .roberta import to_config as roberta_config

# the quantizers' state: QuantLinear, QuantEmbedding, QuantAct, IntLayerNorm buffers
QUANT = r"\.(weight_integer|bias_integer|weight_scaling_factor|fc_scaling_factor|act_scaling_factor|x_min|x_max|shift)$"


def to_config(hf: dict) -> ModelConfig:
    if hf.get("quant_mode", False):
        raise LlmarchError("I-BERT with quant_mode=true (integer-only kernels) is not supported: quant_mode=false only")
    if hf.get("hidden_act", "gelu") != "gelu":
        raise LlmarchError(f"I-BERT with hidden_act {hf['hidden_act']!r} is not supported (its FFN applies GELU)")
    return roberta_config(hf)


def needs(cfg: ModelConfig) -> str | None:
    if cfg.norm_placement != "post" or cfg.final_norm or not cfg.embed_norm or cfg.ffn != "gelu" \
            or cfg.positions != "learned" or not cfg.position_offset or cfg.embed_width != cfg.d_model:
        return "RoBERTa's post-norm blocks, embedding LayerNorm, GELU MLP and learned positions from padding_idx + 1"
    return None


_BASE = family("ibert", "IBert", root="ibert")
FAMILIES.register("ibert")(replace(_BASE, to_config=to_config, ignore=_BASE.ignore + (QUANT,), needs=needs))
