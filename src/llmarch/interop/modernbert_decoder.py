"""The ModernBERT decoder (`model_type: modernbert-decoder`; the causal counterpart of ModernBERT trained on the same
data, Weller et al. 2025, "Seq vs Seq: An Open Suite of Paired Encoders and Decoders", arXiv 2507.11412): ModernBERT's
stack (modernbert.py: embedding LayerNorm, no norm before block 0's attention, GeGLU `Wi`, a final norm, full and
sliding layer types with a RoPE base each) made causal. Its q, k, v are separate (`q_proj`, `k_proj`, `v_proj`) and
a sliding layer sees itself and the local_attention // 2 - 1 keys before it (transformers' sliding_window is
local_attention // 2: our sliding_window kind with that window). The LM head is ModernBERT's MLM head under other
names: `lm_head` (dense -> classifier_activation -> LayerNorm), then the tied `decoder` with its bias
(decoder_bias). Refused: local_attention null, and the sequence classifier."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from . import modernbert
from .hf import FAMILIES, Family
from .mapping import Rule
from .qwen3 import SLIDING

_L = "model.layers.{i}."
_W = ("weight", "bias")
_LAYER = [("attn_norm", "ln1"), ("attn.Wo", "attn.o_proj"), ("mlp_norm", "ln2"), ("mlp.Wi", "mlp.gate_up"),
          ("mlp.Wo", "mlp.down")]
RULES = [
    Rule.of("model.embeddings.tok_embeddings.weight", "embed.weight"),
    *[Rule.of(f"model.embeddings.norm.{w}", f"embed_norm.{w}") for w in _W],
    # block 0's attn_norm is an Identity in transformers and absent in ours: its rules are skipped both ways
    *[Rule.of(tuple(_L + f"attn.{p}_proj.{w}" for p in "qkv"), f"blocks.{{i}}.attn.qkv_proj.{w}") for w in _W],
    *[Rule.of(_L + f"{hf}.{w}", f"blocks.{{i}}.{ours}.{w}") for hf, ours in _LAYER for w in _W],
    *[Rule.of(f"model.final_norm.{w}", f"ln_final.{w}") for w in _W],
    *[Rule.of(f"lm_head.{part}.{w}", f"head_transform.{part}.{w}") for part in ("dense", "norm") for w in _W],
    *[Rule.of(f"decoder.{w}", f"lm_head.{w}") for w in _W],
]
IGNORE = (r"^decoder\.weight$",)


def to_config(hf: dict) -> ModelConfig:
    arch = (hf.get("architectures") or [""])[0]
    if arch.endswith("ForSequenceClassification"):
        raise LlmarchError("modernbert-decoder: ModernBertDecoderForSequenceClassification is not supported (the "
                           "causal LM or the base model)")
    if hf.get("local_attention", 128) is None:
        raise LlmarchError("modernbert-decoder: local_attention null (sliding layers without a window) is not "
                           "supported")
    cfg = modernbert.to_config({**hf, "model_type": "modernbert", "classifier_pooling": "cls"})
    cfg = cfg.replace(name=hf.get("_name_or_path") or "modernbert-decoder", hf_model_type="modernbert-decoder",
                      causal=True, classifier_transform=False, eos_id=hf.get("eos_token_id", 50282))
    if SLIDING not in (cfg.layer_types or []):
        return cfg
    local = {**cfg.layer_overrides[SLIDING], "sliding_window": hf.get("local_attention", 128) // 2}
    return cfg.replace(layer_overrides={SLIDING: local})


def needs(cfg: ModelConfig) -> str | None:
    return modernbert.needs_layout(cfg.replace(causal=False)) or (None if cfg.causal else "a causal stack")


def from_config(cfg: ModelConfig) -> dict:
    out = modernbert.from_config(cfg)
    types = out["layer_types"]
    window = cfg.for_layer(types.index(SLIDING)).sliding_window if SLIDING in types else 64
    for key in ("classifier_pooling", "global_attn_every_n_layers", "global_rope_theta", "local_rope_theta"):
        out.pop(key, None)
    return {**out, "model_type": "modernbert-decoder", "architectures": ["ModernBertDecoderForCausalLM"],
            "local_attention": 2 * window, "eos_token_id": cfg.eos_id}


FAMILIES.register("modernbert-decoder")(Family(RULES, to_config, from_config, IGNORE, needs=needs,
                                               base_prefix="model."))
