"""NomicBERT (`model_type: nomic_bert`; Nussbaum et al. 2024, "Nomic Embed: Training a Reproducible Long Context
Text Embedder", arXiv 2402.01613, §4.1): GTE's layout (gte.py: BERT's post-norm encoder with RoPE and a gated MLP)
with no biases in the blocks, SwiGLU by default, RoPE base 1000, and BERT's MLM head whose activation is the MLP's
(hidden_act). Stored under the original code's names (transformers' conversion mapping, turned back): one fused
`attn.Wqkv`, `fc11` the up projection and `fc12` the gate (ours: gate_up rows gate, then up), `norm1`/`norm2`
after attention and the MLP, `emb_ln` the embedding norm. Heads: the masked LM; NomicBertModel reads as `embed`."""
from __future__ import annotations

from ..config import ModelConfig
from .gte import encoder_config, encoder_hf, encoder_needs
from .hf import FAMILIES, Family
from .mapping import Rule

_W = ("weight", "bias")
_R, _L = "nomic_bert.", "nomic_bert.encoder.layers.{i}."
_LAYER = [("attn.Wqkv", "attn.qkv_proj"), ("attn.out_proj", "attn.o_proj"), ("mlp.fc2", "mlp.down"),
          ("norm1", "ln1"), ("norm2", "ln2")]
RULES = [
    Rule.of(_R + "embeddings.word_embeddings.weight", "embed.weight"),
    Rule.of(_R + "embeddings.token_type_embeddings.weight", "token_types.weight"),
    *[Rule.of(_R + f"emb_ln.{w}", f"embed_norm.{w}") for w in _W],
    *[Rule.of(_L + f"{hf}.{w}", f"blocks.{{i}}.{ours}.{w}") for hf, ours in _LAYER for w in _W],
    Rule.of((_L + "mlp.fc12.weight", _L + "mlp.fc11.weight"), "blocks.{i}.mlp.gate_up.weight"),
    *[Rule.of(f"cls.predictions.transform.dense.{w}", f"head_transform.dense.{w}") for w in _W],
    *[Rule.of(f"cls.predictions.transform.layer_norm.{w}", f"head_transform.norm.{w}") for w in _W],
    Rule.of("cls.predictions.decoder.weight", "lm_head.weight"), Rule.of("cls.predictions.bias", "lm_head.bias"),
]
IGNORE = (r"rotary_emb\.inv_freq$", r"^cls\.predictions\.decoder\.bias$")


def to_config(hf: dict) -> ModelConfig:
    return encoder_config({"hidden_act": "silu", **hf}, "nomic_bert", 1000.0, False)


FAMILIES.register("nomic_bert")(Family(RULES, to_config,
                                       lambda cfg: encoder_hf(cfg, "nomic_bert", "NomicBertForMaskedLM"), IGNORE,
                                       needs=lambda cfg: encoder_needs(cfg, False), base_prefix="nomic_bert."))
