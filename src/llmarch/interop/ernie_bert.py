"""ERNIE 1.0 / 2.0 / 3.0 encoders (`model_type: ernie`; Sun et al. 2019, 2020, 2021; Baidu's nghuyong/ernie-*
conversions): BERT (bert.py's layout under `ernie.`, the MLM head `cls.predictions`, pooler + classifier) with,
where `use_task_id` is set (ERNIE 2.0's continual multi-task pre-training, §4.2.1), a task-type embedding table
added to the input embeddings beside the token types (`task_type_vocab_size`, fed task_type_ids, default 0).
`is_decoder` (ErnieForCausalLM) is the same stack with causal attention and the MLM head as the LM head.
ERNIE 4.5 (`ernie4_5`, a LLaMA-like decoder) is another family: ernie.py. The NSP heads are not supported."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .bert import IGNORE, encoder_rules
from .bert import from_config as bert_hf
from .bert import head_rules
from .bert import to_config as bert_config
from .hf import FAMILIES, Family
from .mapping import Rule

RULES = encoder_rules("ernie", "cls.predictions", "transform.dense", "transform.LayerNorm", "bias")


def more_rules(cfg: ModelConfig) -> list[Rule]:
    """The task-type table, where the config has one."""
    return [Rule.of("ernie.embeddings.task_type_embeddings.weight", "task_types.weight")] \
        if cfg.task_type_vocab_size else []


def to_config(hf: dict) -> ModelConfig:
    if hf.get("add_cross_attention", False):
        raise LlmarchError("ERNIE with add_cross_attention (a decoder over an encoder's output) is not supported")
    tasks = int(hf.get("task_type_vocab_size", 3)) if hf.get("use_task_id", False) else 0
    return bert_config(hf).replace(name=hf.get("_name_or_path") or "ernie", hf_model_type="ernie",
                                   task_type_vocab_size=tasks, causal=bool(hf.get("is_decoder", False)))


def needs(cfg: ModelConfig) -> str | None:
    if cfg.norm_placement != "post" or cfg.final_norm or not cfg.embed_norm or cfg.position_offset \
            or cfg.positions != "learned" or cfg.embed_width != cfg.d_model:
        return "BERT's post-norm blocks, embedding LayerNorm, learned positions from 0 and embeddings of d_model"
    return None


def from_config(cfg: ModelConfig) -> dict:
    arch = "ErnieForCausalLM" if cfg.causal else "ErnieForMaskedLM"
    return {**bert_hf(cfg), "model_type": "ernie", "architectures": [arch], "is_decoder": cfg.causal,
            "use_task_id": bool(cfg.task_type_vocab_size), "task_type_vocab_size": cfg.task_type_vocab_size or 3}


HEADS = head_rules("ernie.pooler.dense", "classifier", "classifier")

FAMILIES.register("ernie")(Family(RULES, to_config, from_config, IGNORE, heads={
    "classify": ("ErnieForSequenceClassification", HEADS["classify"]),
    "tokens": ("ErnieForTokenClassification", HEADS["tokens"])}, base_prefix="ernie.", needs=needs,
    more_rules=more_rules))
