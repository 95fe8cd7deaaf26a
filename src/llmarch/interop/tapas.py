"""TAPAS (`model_type: tapas`; Herzig et al. 2020, "TaPas: Weakly Supervised Table Parsing via Pre-training"): BERT
(bert.py's layout under `tapas.`, the MLM head `cls.predictions`, pooler + classifier) whose one token-type table is
seven (`token_type_embeddings_0..6`, type_vocab_sizes: segment, column, row, previous answer, column rank, inverse
column rank, numeric relation; our `type_vocab_sizes`, fed token_type_ids (B, T, 7)), with positions that restart
at each cell where reset_position_index_per_cell is set (our `position_reset_types` [1, 2]: the column and row
types; layers/table_types.py). Heads: TapasForMaskedLM, TapasForSequenceClassification, and TapasModel as an
embedding model. Refused: TapasForQuestionAnswering (its cell-selection and aggregation heads) and is_decoder.
transformers given no token_type_ids fails where positions reset per cell; llmarch reads all types 0 (one cell)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .bert import IGNORE as BERT_IGNORE
from .bert import encoder_rules, head_rules
from .bert import from_config as bert_hf
from .bert import to_config as bert_config
from .hf import FAMILIES, Family
from .mapping import Rule

_ROOT = "tapas.embeddings."
RULES = [r for r in encoder_rules("tapas", "cls.predictions", "transform.dense", "transform.LayerNorm", "bias")
         if r.ours != "token_types.weight"]
IGNORE = BERT_IGNORE + (r"^tapas\.pooler\.",)  # TapasModel's pooler, which only the sequence classifier reads
_ARCHS = ("TapasForMaskedLM", "TapasForSequenceClassification", "TapasModel")
_CELL = [1, 2]  # the column and row types


def more_rules(cfg: ModelConfig) -> list[Rule]:
    return [Rule.of(f"{_ROOT}token_type_embeddings_{k}.weight", f"type_tables.tables.{k}.weight")
            for k in range(len(cfg.type_vocab_sizes or ()))]


def to_config(hf: dict) -> ModelConfig:
    arch = (hf.get("architectures") or ["TapasForMaskedLM"])[0]
    if arch not in _ARCHS:
        raise LlmarchError(f"{arch} checkpoints are not supported (heads: masked LM, sequence classification, the "
                           "base model; not the table question-answering heads)")
    if hf.get("is_decoder", False):
        raise LlmarchError("TAPAS with is_decoder is not supported (an encoder only)")
    sizes = [int(n) for n in hf.get("type_vocab_sizes", (3, 256, 256, 2, 256, 256, 10))]
    return bert_config({**hf, "type_vocab_size": 0, "max_position_embeddings": hf.get("max_position_embeddings", 1024),
                        "position_embedding_type": "absolute"}).replace(
        name=hf.get("_name_or_path") or "tapas", hf_model_type="tapas", type_vocab_sizes=sizes,
        position_reset_types=_CELL if hf.get("reset_position_index_per_cell", True) else None)


def needs(cfg: ModelConfig) -> str | None:
    if cfg.norm_placement != "post" or cfg.final_norm or not cfg.embed_norm or cfg.position_offset or cfg.causal \
            or cfg.positions != "learned" or cfg.embed_width != cfg.d_model or not cfg.type_vocab_sizes \
            or len(cfg.type_vocab_sizes) < 3 or cfg.position_reset_types not in (None, _CELL):
        return ("BERT's bidirectional post-norm blocks, embedding LayerNorm, learned positions from 0, embeddings of "
                "d_model, token-type tables (type_vocab_sizes) and positions reset per cell ([1, 2]) or not")
    return None


def from_config(cfg: ModelConfig) -> dict:
    out = {**bert_hf(cfg), "model_type": "tapas", "architectures": ["TapasForMaskedLM"],
           "type_vocab_sizes": list(cfg.type_vocab_sizes),
           "reset_position_index_per_cell": cfg.position_reset_types is not None}
    for key in ("type_vocab_size", "is_decoder"):
        out.pop(key)
    return out


HEADS = head_rules("tapas.pooler.dense", "classifier", "classifier")
FAMILIES.register("tapas")(Family(RULES, to_config, from_config, IGNORE, heads={
    "classify": ("TapasForSequenceClassification", HEADS["classify"])}, base_prefix="tapas.", needs=needs,
    more_rules=more_rules))
