"""Longformer (`model_type: longformer`; Beltagy et al. 2020): RoBERTa's layout under `longformer.` with
sliding-window attention of `attention_window` (w/2 keys each side: our sliding_window = w/2 + 1) and, for
tokens marked in `global_attention_mask`, separate global projections (`query_global`, `key_global`,
`value_global`: our `qkv_global`). Every layer must use the same window."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .bert import encoder_rules
from .hf import FAMILIES, Family
from .mapping import Rule
from .roberta import IGNORE
from .roberta import to_config as roberta_config

_SELF = "longformer.encoder.layer.{i}.attention.self."
RULES = encoder_rules("longformer", "lm_head", "dense", "layer_norm", "bias") + [
    Rule.of(tuple(_SELF + f"{p}_global.{w}" for p in ("query", "key", "value")), f"blocks.{{i}}.attn.qkv_global.{w}")
    for w in ("weight", "bias")]


def to_config(hf: dict) -> ModelConfig:
    windows = hf.get("attention_window", 512)
    windows = set(windows) if isinstance(windows, list) else {windows}
    if len(windows) != 1:
        raise LlmarchError(f"Longformer with different windows per layer ({sorted(windows)}) is not supported")
    window = windows.pop()
    if window % 2:
        raise LlmarchError(f"attention_window must be even, got {window}")
    cfg = roberta_config({**hf, "model_type": "longformer"})
    return cfg.replace(name=hf.get("_name_or_path") or "longformer", hf_model_type="longformer",
                       attention="longformer", sliding_window=window // 2 + 1)


def from_config(cfg: ModelConfig) -> dict:
    from .roberta import from_config as roberta_hf

    if cfg.attention != "longformer":
        raise LlmarchError("model_type longformer needs attention='longformer'")
    return {**roberta_hf(cfg), "model_type": "longformer", "architectures": ["LongformerForMaskedLM"],
            "attention_window": [2 * (cfg.sliding_window - 1)] * cfg.n_layers}


FAMILIES.register("longformer")(Family(RULES, to_config, from_config, IGNORE))
