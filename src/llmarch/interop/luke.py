"""LUKE (`model_type: luke`; Yamada et al. 2020, "LUKE: Deep Contextualized Entity Representations with
Entity-aware Self-attention") read as the word-only encoder: RoBERTa (roberta.py's layout under `luke.`, positions
from padding_idx + 1, token types, the MLM head `lm_head`). LUKE adds a second stream of entity tokens (their own
embeddings of entity_emb_size projected to hidden_size, §3.2) and entity-aware self-attention (§3.3: separate query
projections `w2e_query`, `e2w_query`, `e2e_query` for word-to-entity, entity-to-word and entity-to-entity scores).
transformers' LukeModel given no entity_ids runs only the word stream: every layer concatenates nothing to it and
uses the plain `query` (modeling_luke.py, LukeSelfAttention.forward: the entity-aware branch needs entity hidden
states), so its outputs are RoBERTa's on the same weights. llmarch carries no entity stream: the entity tables, the
entity-aware queries and the entity prediction head (`entity_predictions`) are not read, and the heads that read
entities (entity, entity-pair and entity-span classification) are refused, as are question answering and multiple
choice. Read: LukeForMaskedLM, LukeForSequenceClassification (pooler + classifier on the first word),
LukeForTokenClassification and LukeModel as an embedding model. to_hf writes a word-only LUKE (entity tables of the
three special entities [PAD], [UNK], [MASK], no entity-aware queries), which transformers initialises."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .bert import encoder_rules, head_rules
from .hf import FAMILIES, Family
from .roberta import IGNORE as ROBERTA_IGNORE
from .roberta import from_config as roberta_hf
from .roberta import to_config as roberta_config

# transformers 5.25 ties lm_head.bias to lm_head.decoder.bias (the one stored) and leaves lm_head.decoder.weight
# untied from the word embeddings, whatever tie_word_embeddings says: read as the untied head it computes with
RULES = encoder_rules("luke", "lm_head", "dense", "layer_norm", "decoder.bias")
HEADS = head_rules("luke.pooler.dense", "classifier", "classifier")
# the entity stream's weights; the pooler, which only the sequence classifier reads
IGNORE = ROBERTA_IGNORE + (r"^luke\.entity_embeddings\.", r"\.attention\.self\.(w2e|e2w|e2e)_query\.",
                           r"^entity_predictions\.", r"^luke\.pooler\.")
_ARCHS = ("LukeForMaskedLM", "LukeForSequenceClassification", "LukeForTokenClassification", "LukeModel")


def to_config(hf: dict) -> ModelConfig:
    arch = (hf.get("architectures") or ["LukeForMaskedLM"])[0]
    if arch not in _ARCHS:
        raise LlmarchError(f"{arch} checkpoints are not supported: llmarch reads LUKE's word stream only, without "
                           "entity inputs (heads: masked LM, sequence and token classification, the base model)")
    if hf.get("hidden_act", "gelu") != "gelu":  # its MLM head applies GELU whatever hidden_act says
        raise LlmarchError(f"LUKE with hidden_act {hf['hidden_act']!r} is not supported (gelu only)")
    return roberta_config({**hf, "type_vocab_size": hf.get("type_vocab_size", 2)}).replace(
        name=hf.get("_name_or_path") or "luke", tie_embeddings=False)


def needs(cfg: ModelConfig) -> str | None:
    if cfg.norm_placement != "post" or cfg.final_norm or not cfg.embed_norm or cfg.ffn != "gelu" or cfg.causal \
            or cfg.positions != "learned" or not cfg.position_offset or cfg.embed_width != cfg.d_model \
            or cfg.tie_embeddings:
        return ("RoBERTa's bidirectional post-norm blocks, embedding LayerNorm, GELU MLP, learned positions from "
                "padding_idx + 1 and an untied LM head (as transformers reads LukeForMaskedLM)")
    return None


def from_config(cfg: ModelConfig) -> dict:
    out = {**roberta_hf(cfg, model_type="luke", prefix="Luke"), "entity_vocab_size": 3, "entity_emb_size": cfg.d_model,
           "use_entity_aware_attention": False}
    out.pop("is_decoder")
    return out


FAMILIES.register("luke")(Family(RULES, to_config, from_config, IGNORE, heads={
    "classify": ("LukeForSequenceClassification", HEADS["classify"]),
    "tokens": ("LukeForTokenClassification", HEADS["tokens"])}, base_prefix="luke.", needs=needs))
