"""XLM-RoBERTa-XL and -XXL (`model_type: xlm-roberta-xl`; Goyal et al. 2021, "Larger-Scale Transformers for
Multilingual Masked Language Modeling"): XLM-RoBERTa made pre-norm to train at 3.5B and 10.7B parameters: no
LayerNorm over the embeddings, x += attn(LN1(x)) (`attention.self_attn_layer_norm`); x += ffn(LN2(x)) (the
layer's `LayerNorm`), and a final `encoder.LayerNorm`; otherwise RoBERTa's layout under `roberta.` (positions from
padding_idx + 1, MLM head, classification head), the rules of roberta_prelayernorm.prenorm_rules."""
from __future__ import annotations

from functools import partial

from .hf import FAMILIES, Family
from .roberta import from_config as roberta_hf
from .roberta_prelayernorm import HEADS, IGNORE, prenorm_config, prenorm_needs, prenorm_rules, roberta_head_rules

RULES = [*prenorm_rules("roberta", "attention.self_attn_layer_norm", "LayerNorm", "roberta.encoder.LayerNorm", False),
         *roberta_head_rules()]
FAMILIES.register("xlm-roberta-xl")(Family(
    RULES, partial(prenorm_config, embed_norm=False),
    partial(roberta_hf, model_type="xlm-roberta-xl", prefix="XLMRobertaXL"), IGNORE,
    heads={"classify": ("XLMRobertaXLForSequenceClassification", HEADS["classify"]),
           "tokens": ("XLMRobertaXLForTokenClassification", HEADS["tokens"])}, base_prefix="roberta.",
    needs=partial(prenorm_needs, embed_norm=False)))
