"""UltraBERT (`model_type: ultrabert`): EuroBERT's bidirectional LLaMA body (eurobert.py) with ModernBERT-style
alternating attention: `layer_types` (by default every third layer, (i + 1) % 3 == 0, full, the others sliding),
the sliding layers seeing keys within `sliding_window` either side (|i - j| <= w: our sliding_window kind with
w + 1), and a RoPE base per layer type (`rope_parameters` keyed by type: 2 560 000 full, 10 000 sliding). Its MLM
head is a bottleneck MLP (head_mlp = prediction_head_size): linear1 -> GELU (tanh) -> linear2 -> GELU (tanh), both
without biases, then an untied bias-free decoder (`cls` in files; `head.decoder` in the model). transformers'
files name the body `ultrabert.`. Heads: the masked LM; UltrabertModel reads as head `embed`."""
from __future__ import annotations

from ..config import LAYER_FIELDS, ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf, rope_fields, rope_parameters
from .mapping import Rule
from .qwen3 import FULL, SLIDING

_BODY = [Rule(tuple(h.replace("model.", "ultrabert.", 1) for h in r.hf), r.ours, r.layout) for r in LLAMA_RULES
         if not r.ours.startswith("lm_head")]
RULES = [*_BODY, Rule.of("head.linear1.weight", "head_transform.up.weight"),
         Rule.of("head.linear2.weight", "head_transform.down.weight"), Rule.of("cls.weight", "lm_head.weight")]
THETA = {FULL: 2_560_000.0, SLIDING: 10_000.0}  # UltrabertConfig's defaults


def _types(hf: dict) -> list[str]:
    n = hf["num_hidden_layers"]
    types = list(hf.get("layer_types") or [SLIDING if (i + 1) % 3 else FULL for i in range(n)])
    if set(types) - {FULL, SLIDING} or len(types) != n:
        raise LlmarchError(f"ultrabert: layer_types must give {FULL} or {SLIDING} for each of the {n} layers")
    return types


def _rope(hf: dict, kind: str) -> dict:
    params = {"rope_theta": THETA[kind], **((hf.get("rope_parameters") or {}).get(kind) or {})}
    fields = rope_fields({"max_position_embeddings": hf.get("max_position_embeddings", 32768),
                          "rope_parameters": params})
    return {k: v for k, v in fields.items() if k.startswith("rope_")}


def to_config(hf: dict) -> ModelConfig:
    arch = (hf.get("architectures") or [""])[0]
    if arch.endswith(("ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering")):
        raise LlmarchError(f"ultrabert: {arch} is not supported (masked LM or the base model)")
    types = _types(hf)
    cfg = llama_like_config(hf, name=hf.get("_name_or_path") or "ultrabert", causal=False, final_norm=True,
                            head_transform=True, head_mlp=hf.get("prediction_head_size", 768), head_act="gelu_tanh",
                            norm_eps=hf.get("rms_norm_eps", 1e-6), pad_id=hf.get("pad_token_id") or 0,
                            context_length=hf.get("max_position_embeddings", 32768), **_rope(hf, FULL))
    local = {k: v for k, v in _rope(hf, SLIDING).items() if getattr(cfg, k) != v and k in LAYER_FIELDS}
    window = hf.get("sliding_window", 128) + 1
    return cfg.replace(layer_types=types, layer_overrides={SLIDING: {"sliding_window": window, **local}})


def needs(cfg: ModelConfig) -> str | None:
    local = (cfg.layer_overrides or {}).get(SLIDING, {})
    if cfg.causal or cfg.norm != "rmsnorm" or not cfg.final_norm or cfg.positions != "rope" or cfg.head_bias \
            or cfg.rope_fraction != 1.0 or cfg.ffn not in ("swiglu", "geglu", "geglu_tanh") or cfg.sliding_window \
            or cfg.head == "lm" and not (cfg.head_transform and cfg.head_mlp and cfg.head_act == "gelu_tanh") \
            or set(cfg.layer_types or []) - {FULL, SLIDING} or set(cfg.layer_overrides or {}) - {SLIDING} \
            or SLIDING in (cfg.layer_types or []) and "sliding_window" not in local \
            or any(k != "sliding_window" and not k.startswith("rope_") for k in local):
        return ("a bidirectional pre-RMSNorm encoder with RoPE, a gated MLP, full and sliding layer types (a window "
                "and RoPE fields) and a bottleneck MLM head (head_mlp, head_act gelu_tanh) without biases")
    return None


def from_config(cfg: ModelConfig) -> dict:
    types = cfg.layer_types or [FULL] * cfg.n_layers
    local = cfg.for_layer(types.index(SLIDING)) if SLIDING in types else cfg
    return llama_like_hf(cfg, architectures=["UltrabertForMaskedLM"], pad_token_id=cfg.pad_id,
                         layer_types=list(types), prediction_head_size=cfg.head_mlp,
                         sliding_window=local.sliding_window - 1 if SLIDING in types else 128,
                         rope_parameters={FULL: rope_parameters(cfg), SLIDING: rope_parameters(local)})


FAMILIES.register("ultrabert")(Family(RULES, to_config, from_config, IGNORE, needs=needs, base_prefix="ultrabert."))
