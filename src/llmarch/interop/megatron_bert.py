"""Megatron-BERT (`model_type: megatron-bert`; Shoeybi et al. 2019, "Megatron-LM", §5: BERT with the LayerNorms
rearranged, which lets BERT scale past 336M parameters): BERT's layout under `bert.` (bert.py: absolute positions
from 0, token types, the MLM head `cls.predictions`, pooler + classifier) with no LayerNorm over the embeddings and
pre-norm blocks, x += attn(LN1(x)) (`attention.ln`); x += ffn(LN2(x)) (the layer's `ln`), and a final
`encoder.ln` (roberta_prelayernorm.prenorm_rules). The NSP head (ForPreTraining, ForNextSentencePrediction) and
the causal LM are not supported."""
from __future__ import annotations

from ..config import ModelConfig
from .bert import HEADS, IGNORE, _W
from .bert import from_config as bert_hf
from .bert import to_config as bert_config
from .hf import FAMILIES, Family
from .mapping import Rule
from .roberta_prelayernorm import prenorm_rules

RULES = [*prenorm_rules("bert", "attention.ln", "ln", "bert.encoder.ln", False),
         *[Rule.of(f"cls.predictions.transform.dense.{w}", f"head_transform.dense.{w}") for w in _W],
         *[Rule.of(f"cls.predictions.transform.LayerNorm.{w}", f"head_transform.norm.{w}") for w in _W],
         Rule.of("cls.predictions.bias", "lm_head.bias"), Rule.of("cls.predictions.decoder.weight", "lm_head.weight")]


def to_config(hf: dict) -> ModelConfig:
    return bert_config(hf).replace(name=hf.get("_name_or_path") or "megatron-bert", hf_model_type="megatron-bert",
                                   norm_placement="pre", final_norm=True, embed_norm=False)


def needs(cfg: ModelConfig) -> str | None:
    if cfg.norm_placement != "pre" or not cfg.final_norm or cfg.embed_norm or cfg.position_offset:
        return "pre-norm blocks, a final norm, no embedding norm and positions from 0"
    return None


def from_config(cfg: ModelConfig) -> dict:
    return {**bert_hf(cfg), "model_type": "megatron-bert", "architectures": [
        "MegatronBertForCausalLM" if cfg.causal else "MegatronBertForMaskedLM"]}


FAMILIES.register("megatron-bert")(Family(RULES, to_config, from_config, IGNORE, heads={
    "classify": ("MegatronBertForSequenceClassification", HEADS["classify"]),
    "tokens": ("MegatronBertForTokenClassification", HEADS["tokens"])}, base_prefix="bert.", needs=needs))
