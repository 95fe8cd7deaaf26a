"""LayoutLM v1 (`model_type: layoutlm`; Xu et al. 2020, "LayoutLM: Pre-training of Text and Layout for Document
Image Understanding"): BERT (bert.py's layout under `layoutlm.`, the MLM head `cls.predictions`, pooler +
classifier) plus 2-D position embeddings of each token's bounding box (§2.2): `x_position_embeddings` (read for x0
and x1), `y_position_embeddings` (y0, y1), `h_position_embeddings` and `w_position_embeddings` of
max_2d_position_embeddings rows, added to the input embeddings before the embedding LayerNorm (our
`box_vocab_size`, layers/box_positions.py, fed forward's bbox (B, T, 4); none given: all boxes (0, 0, 0, 0), as
transformers fills them). Heads: LayoutLMForMaskedLM, LayoutLMForSequenceClassification,
LayoutLMForTokenClassification, and LayoutLMModel as an embedding model. The image features of the paper's
fine-tuning stage (§2.3, a Faster R-CNN over the page) are not part of the transformers model.
LayoutLMForQuestionAnswering (a span head) is refused."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .bert import IGNORE as BERT_IGNORE
from .bert import encoder_rules
from .bert import from_config as bert_hf
from .bert import head_rules
from .bert import to_config as bert_config
from .hf import FAMILIES, Family
from .mapping import Rule

RULES = encoder_rules("layoutlm", "cls.predictions", "transform.dense", "transform.LayerNorm", "bias") + [
    Rule.of(f"layoutlm.embeddings.{t}_position_embeddings.weight", f"box_embed.{t}.weight") for t in "xyhw"]
HEADS = head_rules("layoutlm.pooler.dense", "classifier", "classifier")
# LayoutLMModel always holds its pooler, which only the sequence classifier reads
IGNORE = BERT_IGNORE + (r"^layoutlm\.pooler\.",)
_ARCHS = ("LayoutLMForMaskedLM", "LayoutLMForSequenceClassification", "LayoutLMForTokenClassification",
          "LayoutLMModel")


def to_config(hf: dict) -> ModelConfig:
    arch = (hf.get("architectures") or ["LayoutLMForMaskedLM"])[0]
    if arch not in _ARCHS:
        raise LlmarchError(f"{arch} checkpoints are not supported (heads: masked LM, sequence and token "
                           "classification, the base model)")
    if hf.get("is_decoder", False):
        raise LlmarchError("LayoutLM with is_decoder is not supported (transformers' LayoutLM is an encoder)")
    return bert_config({**hf, "position_embedding_type": "absolute"}).replace(
        name=hf.get("_name_or_path") or "layoutlm", hf_model_type="layoutlm",
        box_vocab_size=int(hf.get("max_2d_position_embeddings", 1024)))


def needs(cfg: ModelConfig) -> str | None:
    if cfg.norm_placement != "post" or cfg.final_norm or not cfg.embed_norm or cfg.position_offset \
            or cfg.positions != "learned" or cfg.embed_width != cfg.d_model or not cfg.box_vocab_size or cfg.causal:
        return ("BERT's bidirectional post-norm blocks, embedding LayerNorm, learned positions from 0, embeddings of "
                "d_model and 2-D box positions (box_vocab_size)")
    return None


def from_config(cfg: ModelConfig) -> dict:
    out = {**bert_hf(cfg), "model_type": "layoutlm", "architectures": ["LayoutLMForMaskedLM"],
           "max_2d_position_embeddings": cfg.box_vocab_size}
    out.pop("is_decoder")
    return out


FAMILIES.register("layoutlm")(Family(RULES, to_config, from_config, IGNORE, heads={
    "classify": ("LayoutLMForSequenceClassification", HEADS["classify"]),
    "tokens": ("LayoutLMForTokenClassification", HEADS["tokens"])}, base_prefix="layoutlm.", needs=needs))
