"""Nystromformer (`model_type: nystromformer`; Xiong et al. 2021): BERT's post-norm layout under `nystromformer.`
with Nyström attention (attention 'nystrom', layers/attention_kinds/nystrom.py): `num_landmarks` segment means over
inputs of `segment_means_seq_len` tokens (exact softmax where the two are equal) and a depthwise convolution of
`conv_kernel_size` over each head's values (`attention.self.conv`). Positions count from 2 (the table has
max_position_embeddings + 2 rows). Heads: the masked LM (BERT's names under `cls.predictions`), the per-token
classifier; NystromformerModel reads as head `embed`. Refused: the sequence classifier (its head's activation is
hidden_act, which the pooler does not take), `inv_coeff_init_option` (transformers reads a config key that does
not exist), an even `conv_kernel_size` (transformers' output is then one token longer and fails)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .bert import encoder_rules, kind_encoder_needs
from .bert import from_config as bert_hf
from .bert import to_config as bert_config
from .hf import FAMILIES, Family
from .mapping import Rule

RULES = encoder_rules("nystromformer", "cls.predictions", "transform.dense", "transform.LayerNorm", "bias")
CONV = [Rule.of("nystromformer.encoder.layer.{i}.attention.self.conv.weight", "blocks.{i}.attn.conv.weight")]
TOKENS = [Rule.of(f"classifier.{w}", f"classifier.{w}") for w in ("weight", "bias")]
IGNORE = (r"^cls\.predictions\.decoder\.bias$", r"embeddings\.(position|token_type)_ids$")
_OFFSET = 2  # transformers' position ids: arange + 2


def to_config(hf: dict) -> ModelConfig:
    if hf.get("inv_coeff_init_option"):
        raise LlmarchError("nystromformer: inv_coeff_init_option is not supported (transformers itself fails on it)")
    kernel = hf.get("conv_kernel_size", 65)
    if kernel is not None and kernel % 2 == 0:
        raise LlmarchError(f"nystromformer: an even conv_kernel_size ({kernel}) is not supported (transformers' "
                           "convolution then returns one position too many)")
    cfg = bert_config({"hidden_act": "gelu_new", "layer_norm_eps": 1e-5, "max_position_embeddings": 510, **hf})
    return cfg.replace(name=hf.get("_name_or_path") or "nystromformer", hf_model_type="nystromformer",
                       attention="nystrom", nystrom_landmarks=hf.get("num_landmarks", 64),
                       nystrom_seq_len=hf.get("segment_means_seq_len", 64), value_conv=kernel or 0,
                       position_offset=_OFFSET, pad_id=hf.get("pad_token_id", 1) or 0)


def needs(cfg: ModelConfig) -> str | None:
    return kind_encoder_needs(cfg, "nystrom", _OFFSET)


def from_config(cfg: ModelConfig) -> dict:
    return dict(bert_hf(cfg), model_type="nystromformer", architectures=["NystromformerForMaskedLM"], is_decoder=False,
                num_landmarks=cfg.nystrom_landmarks, segment_means_seq_len=cfg.nystrom_seq_len,
                conv_kernel_size=cfg.value_conv or None, inv_coeff_init_option=False, pad_token_id=cfg.pad_id)


def more_rules(cfg: ModelConfig) -> list[Rule]:
    return CONV if cfg.value_conv else []


FAMILIES.register("nystromformer")(Family(RULES, to_config, from_config, IGNORE, needs=needs, more_rules=more_rules,
                                          heads={"tokens": ("NystromformerForTokenClassification", TOKENS)},
                                          base_prefix="nystromformer."))
