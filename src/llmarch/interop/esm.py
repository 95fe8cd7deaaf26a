"""ESM (`model_type: esm`; ESM-1b, Rives et al. 2021, and ESM-2, Lin et al. 2023: protein language models over amino
acid tokens): a pre-norm bidirectional encoder, x += attn(LN1(x)) (`attention.LayerNorm`); x += ffn(LN2(x)) (the
layer's `LayerNorm`), exact-GELU MLP, a final LayerNorm (`encoder.emb_layer_norm_after`, always there), and
- positions: `absolute` (ESM-1b: a learned table counted from padding_idx + 1, as RoBERTa's) or `rotary` (ESM-2:
  RoPE over whole heads, positions from 0, base rope_theta); relative_key(_query) is refused;
- `emb_layer_norm_before` (ESM-1b): a LayerNorm over the embeddings (`embeddings.layer_norm`);
- `token_dropout` (ESM-2): mask tokens' embeddings zeroed and each row rescaled (layers/token_dropout.py);
- the MLM head `lm_head`: dense -> GELU -> LayerNorm -> the tied embedding matrix + bias (RoBERTa's);
- EsmForSequenceClassification's head (dense -> tanh -> out_proj on the first token: our pooler + classifier) and a
  per-token classifier.
EsmModel also holds a contact-prediction head (`contact_head`, a logistic regression over the attention maps), not
read (llmarch returns no attention maps), nor written (transformers initialises it). Padded positions' embeddings,
which transformers zeroes, are never read by a real token's. The folding model (ESMFold) and is_decoder are refused."""
from __future__ import annotations

import re

from ..config import ModelConfig
from ..errors import LlmarchError
from .bert import _W, head_rules
from .hf import FAMILIES, Family
from .mapping import Rule
from .roberta_prelayernorm import prenorm_rules, roberta_head_rules

RULES = [*prenorm_rules("esm", "attention.LayerNorm", "LayerNorm", "esm.encoder.emb_layer_norm_after", False),
         *[Rule.of(f"esm.embeddings.layer_norm.{w}", f"embed_norm.{w}") for w in _W], *roberta_head_rules()]
HEADS = head_rules("classifier.dense", "classifier.out_proj", "classifier")
# derived buffers; the contact head; an unused position table beside rotary positions (transformers ignores it too)
IGNORE = (r"embeddings\.position_ids$", r"rotary_embeddings\.inv_freq$", r"contact_head\.",
          r"embeddings\.position_embeddings\.weight$", r"^lm_head\.decoder\.bias$")


def canonical(name: str) -> str:
    """transformers reads `LayerNorm.gamma` / `.beta` as `.weight` / `.bias` in ESM checkpoints (its legacy renaming)
    and, reversing it, writes them so: the Hub's ESM files hold `.weight`, those transformers 5 saves `.gamma`."""
    return re.sub(r"LayerNorm\.(gamma|beta)$", lambda m: "LayerNorm." + ("weight" if m[1] == "gamma" else "bias"), name)


def to_config(hf: dict) -> ModelConfig:
    positions = hf.get("position_embedding_type", "absolute")
    if positions not in ("absolute", "rotary") or hf.get("is_folding_model") or hf.get("is_decoder"):
        raise LlmarchError(f"ESM with position_embedding_type {positions!r}, is_folding_model or is_decoder is not "
                           "supported (the absolute or rotary masked-LM encoder)")
    if hf.get("token_dropout") and hf.get("mask_token_id") is None:
        raise LlmarchError("ESM with token_dropout needs mask_token_id")
    rotary, pad = positions == "rotary", hf.get("pad_token_id")
    offset = 0 if rotary else (pad or 0) + 1  # positions from padding_idx + 1, as RoBERTa's
    return ModelConfig(
        name=hf.get("_name_or_path") or "esm", hf_model_type="esm", vocab_size=hf["vocab_size"],
        d_model=hf["hidden_size"], n_layers=hf["num_hidden_layers"], n_heads=hf["num_attention_heads"], ffn="gelu",
        ffn_hidden=hf["intermediate_size"], norm="layernorm", norm_eps=hf.get("layer_norm_eps", 1e-12),
        norm_placement="pre", final_norm=True, causal=False, embed_norm=bool(hf.get("emb_layer_norm_before")),
        positions="rope" if rotary else "learned", rope_theta=float(hf.get("rope_theta", 10000.0)),
        position_offset=offset, context_length=hf.get("max_position_embeddings", 1026) - offset,
        token_dropout_id=hf["mask_token_id"] if hf.get("token_dropout") else None, head_transform=True,
        head_bias=True, tie_embeddings=hf.get("tie_word_embeddings", True), pad_id=pad or 0)


def needs(cfg: ModelConfig) -> str | None:
    rotary = cfg.positions == "rope" and cfg.rotary_dim == cfg.head_dim and cfg.rope_scaling == "none" \
        and not cfg.position_offset
    if cfg.norm_placement != "pre" or not cfg.final_norm or cfg.ffn != "gelu" or cfg.type_vocab_size \
            or cfg.causal or not (rotary or cfg.positions == "learned") or cfg.embed_width != cfg.d_model \
            or cfg.head == "lm" and not (cfg.head_transform and cfg.head_bias and cfg.tied_head):
        return ("pre-norm bidirectional blocks with a final norm, a GELU MLP, no token types, learned positions or "
                "unscaled RoPE over whole heads from 0, and a tied LM head with its transform and bias")
    return None


def from_config(cfg: ModelConfig) -> dict:
    rotary = cfg.positions == "rope"
    return dict(model_type="esm", architectures=["EsmForMaskedLM"], vocab_size=cfg.vocab_size,
                hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
                intermediate_size=cfg.ffn_hidden, layer_norm_eps=cfg.norm_eps, emb_layer_norm_before=cfg.embed_norm,
                position_embedding_type="rotary" if rotary else "absolute", rope_theta=cfg.rope_theta,
                pad_token_id=cfg.position_offset - 1 if not rotary else cfg.pad_id,
                max_position_embeddings=cfg.context_length + cfg.position_offset,
                token_dropout=cfg.token_dropout_id is not None, mask_token_id=cfg.token_dropout_id,
                tie_word_embeddings=cfg.tie_embeddings)


FAMILIES.register("esm")(Family(RULES, to_config, from_config, IGNORE, canonical=canonical, heads={
    "classify": ("EsmForSequenceClassification", HEADS["classify"]),
    "tokens": ("EsmForTokenClassification", HEADS["tokens"])}, base_prefix="esm.", needs=needs))
