"""YOSO (`model_type: yoso`; Zeng et al. 2021): BERT's post-norm layout under `yoso.` with YOSO's attention in its
expectation form (attention 'yoso', layers/attention_kinds/yoso.py: `hash_code_len` as yoso_hash_len,
`conv_window` as value_conv, `attention.self.conv`), positions counted from 2 (a table of
max_position_embeddings + 2 rows). Heads: the masked LM (BERT's names under `cls.predictions`), the per-token
classifier; YosoModel reads as head `embed`. Refused: `use_expectation: false` (the sampled LSH form, which
transformers runs only with its CUDA kernels; `num_hash`, `use_fast_hash` and `lsh_backward` belong to it) and the
sequence classifier (its head's activation is hidden_act, which the pooler does not take)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .bert import encoder_rules, kind_encoder_needs
from .bert import from_config as bert_hf
from .bert import to_config as bert_config
from .hf import FAMILIES, Family
from .mapping import Rule

RULES = encoder_rules("yoso", "cls.predictions", "transform.dense", "transform.LayerNorm", "bias")
CONV = [Rule.of("yoso.encoder.layer.{i}.attention.self.conv.weight", "blocks.{i}.attn.conv.weight")]
TOKENS = [Rule.of(f"classifier.{w}", f"classifier.{w}") for w in ("weight", "bias")]
IGNORE = (r"^cls\.predictions\.decoder\.bias$", r"embeddings\.(position|token_type)_ids$")
_OFFSET = 2  # transformers' position ids: arange + 2


def to_config(hf: dict) -> ModelConfig:
    if not hf.get("use_expectation", True):
        raise LlmarchError("yoso: use_expectation false (the sampled LSH attention, CUDA kernels only) is not "
                           "supported; the expectation form is")
    window = hf.get("conv_window")
    cfg = bert_config({"max_position_embeddings": 4096, "type_vocab_size": 1, **hf})
    return cfg.replace(name=hf.get("_name_or_path") or "yoso", hf_model_type="yoso", attention="yoso",
                       yoso_hash_len=hf.get("hash_code_len", 9), value_conv=window or 0, position_offset=_OFFSET,
                       pad_id=hf.get("pad_token_id", 1) or 0)


def needs(cfg: ModelConfig) -> str | None:
    return kind_encoder_needs(cfg, "yoso", _OFFSET)


def from_config(cfg: ModelConfig) -> dict:
    return dict(bert_hf(cfg), model_type="yoso", architectures=["YosoForMaskedLM"], is_decoder=False,
                use_expectation=True, hash_code_len=cfg.yoso_hash_len, conv_window=cfg.value_conv or None,
                pad_token_id=cfg.pad_id)


def more_rules(cfg: ModelConfig) -> list[Rule]:
    return CONV if cfg.value_conv else []


FAMILIES.register("yoso")(Family(RULES, to_config, from_config, IGNORE, needs=needs, more_rules=more_rules,
                                 heads={"tokens": ("YosoForTokenClassification", TOKENS)}, base_prefix="yoso."))
