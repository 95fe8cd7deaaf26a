"""EuroBERT (`model_type: eurobert`; Boizard et al. 2025, "EuroBERT: Scaling Multilingual Encoders for European
Languages", arXiv 2503.05500): a LLaMA body read bidirectionally. Pre-norm RMSNorm blocks, RoPE over whole heads
(half-split pairs), grouped-query attention, a SwiGLU MLP, a final RMSNorm, no embedding norm and no positions
table: llama.py's layout and config reading with causal=False. The MLM head is a plain projection (`lm_head`,
untied by default) with a bias where mlp_bias is set. Heads: the masked LM and ModelForTokenClassification (a
`classifier` on every token); EuroBertModel reads as head `embed`. The sequence classifier (dense -> GELU ->
classifier, with pooling 'bos', 'mean' or 'late': the classifier's logits averaged over tokens) is refused."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf
from .mapping import Rule

RULES = [*LLAMA_RULES, Rule.of("lm_head.bias", "lm_head.bias")]
_CLASSIFIER = [Rule.of(f"classifier.{w}", f"classifier.{w}") for w in ("weight", "bias")]


def to_config(hf: dict) -> ModelConfig:
    arch = (hf.get("architectures") or [""])[0]
    if arch.endswith("ForSequenceClassification"):
        raise LlmarchError("eurobert: EuroBertForSequenceClassification is not supported (its dense -> GELU "
                           "classifier and 'late' pooling are not llmarch's heads); masked LM, tokens or the base")
    return llama_like_config(hf, name=hf.get("_name_or_path") or "eurobert", causal=False, final_norm=True,
                             head_bias=hf.get("mlp_bias", False), norm_eps=hf.get("rms_norm_eps", 1e-5),
                             pad_id=hf.get("pad_token_id") or 0, context_length=hf.get("max_position_embeddings", 8192))


def needs(cfg: ModelConfig) -> str | None:
    if cfg.causal or cfg.norm != "rmsnorm" or cfg.norm_placement != "pre" or not cfg.final_norm \
            or cfg.embed_norm or cfg.positions != "rope" or cfg.rope_fraction != 1.0 or cfg.type_vocab_size \
            or cfg.head_transform or cfg.ffn not in ("swiglu", "geglu", "geglu_tanh") \
            or cfg.head == "lm" and cfg.head_bias != cfg.bias:
        return ("a bidirectional pre-RMSNorm encoder with RoPE over whole heads, a final norm, a gated MLP and a "
                "plain LM head whose bias follows the MLP's")
    return None


def from_config(cfg: ModelConfig) -> dict:
    return llama_like_hf(cfg, architectures=["EuroBertForMaskedLM"], pad_token_id=cfg.pad_id)


FAMILIES.register("eurobert")(Family(RULES, to_config, from_config, IGNORE, needs=needs, base_prefix="model.",
                                     heads={"tokens": ("EuroBertForTokenClassification", _CLASSIFIER)}))
