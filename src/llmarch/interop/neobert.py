"""NeoBERT (`model_type: neobert`; Le Breton et al. 2025, "NeoBERT: A Next-Generation BERT", arXiv 2502.19587):
a pre-norm encoder, RMSNorm before attention and before the MLP and after the last block, RoPE turning adjacent
pairs of each head's dims, a SwiGLU MLP, no biases, no position table, no embedding norm. transformers has no
NeoBERT (its checkpoints run remote code), so this table is the layout llama.cpp's converter (NeoBert) reads: the
embedding `encoder`, `transformer_encoder.{i}.attention_norm`, one fused `qkv` whose rows are all q | all k | all v
(as llama.cpp's graph splits it; the converter copies the rows as they are: NeoBERT's own code may group them per
head, which is not checked here), `wo`, `ffn_norm`, `ffn.w12` (gate rows, then up) and `ffn.w3`, the final norm
`layer_norm`; q and k's rows reordered per head to llmarch's halves (layout `rope_pairs_qkv`). The SwiGLU is
int(2 intermediate_size / 3) wide, as the converter writes it. Heads: the masked LM (NeoBERTLMHead: `decoder`, a
biased projection, not tied); a GGUF file's encoder reads as head `embed`."""
from __future__ import annotations

from ..config import ModelConfig
from .hf import FAMILIES, Family
from .mapping import Rule

_L = "model.transformer_encoder.{i}."
RULES = [
    Rule.of("model.encoder.weight", "embed.weight"),
    Rule.of(_L + "attention_norm.weight", "blocks.{i}.ln1.weight"),
    Rule.of(_L + "qkv.weight", "blocks.{i}.attn.qkv_proj.weight", "rope_pairs_qkv"),
    Rule.of(_L + "wo.weight", "blocks.{i}.attn.o_proj.weight"),
    Rule.of(_L + "ffn_norm.weight", "blocks.{i}.ln2.weight"),
    Rule.of(_L + "ffn.w12.weight", "blocks.{i}.mlp.gate_up.weight"),
    Rule.of(_L + "ffn.w3.weight", "blocks.{i}.mlp.down.weight"),
    Rule.of("model.layer_norm.weight", "ln_final.weight"),
    Rule.of("decoder.weight", "lm_head.weight"), Rule.of("decoder.bias", "lm_head.bias"),
]


def to_config(hf: dict) -> ModelConfig:
    heads = hf["num_attention_heads"]
    return ModelConfig(name=hf.get("_name_or_path") or "neobert", hf_model_type="neobert",
                       vocab_size=hf["vocab_size"], d_model=hf["hidden_size"], n_layers=hf["num_hidden_layers"],
                       n_heads=heads, head_dim=hf["hidden_size"] // heads, ffn="swiglu",
                       ffn_hidden=int(2 * hf["intermediate_size"] / 3), norm="rmsnorm",
                       norm_eps=hf.get("norm_eps", 1e-6), positions="rope", rope_theta=hf.get("rope_theta", 10000.0),
                       causal=False, bias=False, head_bias=True, tie_embeddings=hf.get("tie_word_embeddings", False),
                       pad_id=hf.get("pad_token_id") or 0,
                       context_length=hf.get("max_length", hf.get("max_position_embeddings", 4096)))


def from_config(cfg: ModelConfig) -> dict:
    return dict(model_type="neobert", architectures=["NeoBERTLMHead"], vocab_size=cfg.vocab_size,
                hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
                intermediate_size=(3 * cfg.ffn_hidden + 1) // 2, norm_eps=cfg.norm_eps, rope_theta=cfg.rope_theta,
                max_length=cfg.context_length, pad_token_id=cfg.pad_id)


def needs(cfg: ModelConfig) -> str | None:
    if cfg.causal or cfg.norm != "rmsnorm" or cfg.norm_placement != "pre" or not cfg.final_norm or cfg.embed_norm \
            or cfg.positions != "rope" or cfg.rope_fraction != 1.0 or cfg.rope_scaling != "none" \
            or cfg.ffn != "swiglu" or cfg.bias or cfg.qkv_bias or cfg.o_bias or cfg.n_kv_heads != cfg.n_heads \
            or cfg.type_vocab_size or cfg.head == "lm" and (cfg.head_transform or not cfg.head_bias
                                                            or cfg.tie_embeddings):
        return ("a bidirectional pre-RMSNorm encoder with a final norm, RoPE over whole heads without scaling, MHA and "
                "a SwiGLU MLP without biases, no token types, and an untied, biased MLM projection")
    return None


FAMILIES.register("neobert")(Family(RULES, to_config, from_config, needs=needs))
