"""RoBERTa-PreLayerNorm (`model_type: roberta-prelayernorm`; fairseq's `--encoder-normalize-before` RoBERTa, as in
Wettig et al. 2023's efficient MLM checkpoints): RoBERTa (roberta.py: positions from padding_idx + 1, its MLM head,
its classification head) with pre-norm blocks, x += attn(LN1(x)); x += ffn(LN2(x)), a LayerNorm over the embeddings
and one after the last block (`roberta_prelayernorm.LayerNorm`), under `roberta_prelayernorm.`. The rules of a
pre-norm BERT-layout encoder (`prenorm_rules`) serve XLM-RoBERTa-XL and Megatron-BERT too. The MLM head applies
GELU whatever hidden_act says: another hidden_act reads with head_act gelu, as RoBERTa's does."""
from __future__ import annotations

from functools import partial

from ..config import ModelConfig
from .bert import _W, BERT_ACTIVATIONS, head_rules
from .hf import FAMILIES, Family
from .mapping import Rule
from .roberta import from_config as roberta_hf
from .roberta import to_config as roberta_config


def prenorm_rules(root: str, ln1: str, ln2: str, final: str, embed_norm: bool) -> list[Rule]:
    """The embeddings (with their LayerNorm or none) and pre-norm blocks of a BERT-layout encoder under `root`: each
    layer's norms before attention (ln1) and before the FFN (ln2), and the final norm (a full name)."""
    e, layer = f"{root}.embeddings.", f"{root}.encoder.layer.{{i}}."
    names = [("attention.output.dense", "attn.o_proj"), (ln1, "ln1"), ("intermediate.dense", "mlp.up"),
             ("output.dense", "mlp.down"), (ln2, "ln2")]
    return [
        Rule.of(e + "word_embeddings.weight", "embed.weight"),
        Rule.of(e + "position_embeddings.weight", "positions.weight"),
        Rule.of(e + "token_type_embeddings.weight", "token_types.weight"),
        *([Rule.of(e + f"LayerNorm.{w}", f"embed_norm.{w}") for w in _W] if embed_norm else []),
        *[Rule.of(tuple(layer + f"attention.self.{p}.{w}" for p in ("query", "key", "value")),
                  f"blocks.{{i}}.attn.qkv_proj.{w}") for w in _W],
        *[Rule.of(layer + f"{hf}.{w}", f"blocks.{{i}}.{ours}.{w}") for hf, ours in names for w in _W],
        *[Rule.of(f"{final}.{w}", f"ln_final.{w}") for w in _W],
    ]


def roberta_head_rules() -> list[Rule]:
    """RoBERTa's MLM head (lm_head: dense -> GELU -> layer_norm -> tied decoder + bias)."""
    return [*[Rule.of(f"lm_head.dense.{w}", f"head_transform.dense.{w}") for w in _W],
            *[Rule.of(f"lm_head.layer_norm.{w}", f"head_transform.norm.{w}") for w in _W],
            Rule.of("lm_head.bias", "lm_head.bias"), Rule.of("lm_head.decoder.weight", "lm_head.weight")]


def prenorm_config(hf: dict, embed_norm: bool) -> ModelConfig:
    """RoBERTa's config with pre-norm blocks, a final norm, and an embedding norm or none (the MLM head's exact GELU
    read as RoBERTa's is, head_act gelu beside another hidden_act)."""
    return roberta_config(hf).replace(norm_placement="pre", final_norm=True, embed_norm=embed_norm)


def prenorm_needs(cfg: ModelConfig, embed_norm: bool) -> str | None:
    """Family.needs: what a pre-norm family's layout cannot hold, or None."""
    if cfg.norm_placement != "pre" or not cfg.final_norm or cfg.embed_norm != embed_norm \
            or cfg.ffn not in BERT_ACTIVATIONS.values():
        return (f"pre-norm blocks, a final norm, {'an' if embed_norm else 'no'} embedding norm and an ffn of "
                f"{', '.join(BERT_ACTIVATIONS.values())}")
    return None


ROOT = "roberta_prelayernorm"
RULES = [*prenorm_rules(ROOT, "attention.LayerNorm", "intermediate.LayerNorm", f"{ROOT}.LayerNorm", True),
         *roberta_head_rules()]
HEADS = head_rules("classifier.dense", "classifier.out_proj", "classifier")
IGNORE = (r"^lm_head\.decoder\.bias$", r"embeddings\.(position|token_type)_ids$")
FAMILIES.register("roberta-prelayernorm")(Family(
    RULES, partial(prenorm_config, embed_norm=True),
    partial(roberta_hf, model_type="roberta-prelayernorm", prefix="RobertaPreLayerNorm"), IGNORE,
    heads={"classify": ("RobertaPreLayerNormForSequenceClassification", HEADS["classify"]),
           "tokens": ("RobertaPreLayerNormForTokenClassification", HEADS["tokens"])}, base_prefix=f"{ROOT}.",
    needs=partial(prenorm_needs, embed_norm=True)))
