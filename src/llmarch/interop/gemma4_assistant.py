"""Gemma 4's assistants (`model_type: gemma4_assistant`, transformers' Gemma4AssistantForCausalLM, published as
google/gemma-4-*-assistant; `gemma4_unified_assistant`, Gemma4UnifiedAssistantForCausalLM, the same model over a
gemma4_unified_text config): multi-token-prediction drafters for Gemma 4's speculative decoding, read as a
DrafterLM (models/drafter.py; config draft_target_width = backbone_hidden_size). The text_config is a Gemma 4 text
model (gemma4.py) whose layers all share keys and values (num_kv_shared_layers = num_hidden_layers: they project
queries only and read the target's), without per-layer inputs, experts or double-wide MLPs (transformers refuses
those too); pre_projection reads [target embedding; target hidden state], post_projection writes the next step's
state, and use_ordered_embeddings scores the tokens of the top centroid_intermediate_top_k of num_centroids clusters
only (draft_centroids). The logits are not soft-capped, as transformers' assistant leaves them, whatever
final_logit_softcapping the text config holds (kept for the round trip)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from . import gemma4, gemma4_unified_text
from .hf import FAMILIES, Family
from .mapping import Rule

RULES = gemma4.RULES + [
    Rule.of("pre_projection.weight", "pre_proj.weight"),
    Rule.of("post_projection.weight", "post_proj.weight"),
    Rule.of("masked_embedding.centroids.weight", "centroid_head.centroids.weight"),
    Rule.of("masked_embedding.token_ordering", "centroid_head.token_order"),
]
# what transformers' Gemma4AssistantConfig assumes for fields a config.json leaves out
DEFAULTS = dict(backbone_hidden_size=1536, use_ordered_embeddings=False, num_centroids=2048,
                centroid_intermediate_top_k=32, tie_word_embeddings=True)


def _reader(model_type: str, read_text, text_defaults: dict):
    def to_config(hf: dict) -> ModelConfig:
        hf = {**DEFAULTS, **hf}
        given = hf.get("text_config") or {}
        text = {**text_defaults, **given}
        n = int(text["num_hidden_layers"])
        for field in ("hidden_size_per_layer_input", "vocab_size_per_layer_input", "enable_moe_block",
                      "use_double_wide_mlp"):
            if given.get(field):
                raise LlmarchError(f"{model_type}: text_config {field}={text[field]!r} is not supported (an "
                                   "assistant has no per-layer inputs, experts or double-wide MLPs)")
        if (text.get("num_kv_shared_layers") or n) != n:
            raise LlmarchError(f"{model_type}: every layer of an assistant reads its target's keys and values "
                               f"(num_kv_shared_layers = num_hidden_layers = {n}, got {text['num_kv_shared_layers']})")
        cfg = read_text({**text, "num_kv_shared_layers": 0, "hidden_size_per_layer_input": 0,
                         "enable_moe_block": False})
        ordered = bool(hf["use_ordered_embeddings"])
        return cfg.replace(kv_shared_layers=n, draft_target_width=int(hf["backbone_hidden_size"]),
                           draft_centroids=int(hf["num_centroids"]) if ordered else 0,
                           draft_centroid_top_k=int(hf["centroid_intermediate_top_k"]),
                           tie_embeddings=bool(hf["tie_word_embeddings"]), hf_model_type=model_type)
    return to_config


def _writer(model_type: str, arch: str, text_type: str, write_text):
    def from_config(cfg: ModelConfig) -> dict:
        text = write_text(cfg.replace(kv_shared_layers=0, draft_target_width=0, draft_centroids=0,
                                      draft_centroid_top_k=DEFAULTS["centroid_intermediate_top_k"],
                                      hf_model_type=text_type))
        text.pop("architectures", None)
        text.update(num_kv_shared_layers=cfg.n_layers, hidden_size_per_layer_input=0, vocab_size_per_layer_input=0)
        return dict(architectures=[arch], model_type=model_type, text_config=text,
                    backbone_hidden_size=cfg.draft_target_width, use_ordered_embeddings=bool(cfg.draft_centroids),
                    num_centroids=cfg.draft_centroids or DEFAULTS["num_centroids"],
                    centroid_intermediate_top_k=cfg.draft_centroid_top_k, tie_word_embeddings=cfg.tie_embeddings)
    return from_config


def _needs(cfg: ModelConfig) -> str | None:
    return None if cfg.draft_target_width else "a drafter's config (draft_target_width, models/drafter.py)"


for _type, _arch, _text_type, _read, _write, _defaults in (
        ("gemma4_assistant", "Gemma4AssistantForCausalLM", "gemma4_text", gemma4.to_config, gemma4.from_config,
         gemma4.DEFAULTS),
        ("gemma4_unified_assistant", "Gemma4UnifiedAssistantForCausalLM", "gemma4_unified_text",
         gemma4_unified_text.to_config, gemma4_unified_text.from_config, gemma4_unified_text.DEFAULTS)):
    FAMILIES.register(_type)(Family(RULES, _reader(_type, _read, _defaults), _writer(_type, _arch, _text_type, _write),
                                    gemma4.IGNORE_SHARED, more_rules=gemma4.qkv_rules, needs=_needs))
