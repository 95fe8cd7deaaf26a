"""ESM C (`model_type: esmc`; EvolutionaryScale 2024, "ESM Cambrian", the protein language models beside ESM3): a
pre-norm bidirectional encoder over amino-acid tokens with LLaMA's parts where ESM-2 (esm.py) had BERT's:
- no position table: RoPE over whole heads (rotate-half), positions 0.. over the right-padded rows;
- attention: q, k, v, o without biases (attention_bias), a LayerNorm without bias over the whole query and key
  projections before they split into heads (q_norm, k_norm: our qk_norm 'proj', qk_norm_bias false);
- a SwiGLU FFN (gate_proj, up_proj, down_proj; mlp_bias);
- each sublayer's output divided by sqrt(num_hidden_layers / 36) before its residual add (the reference's residue
  scaling: our residual_multiplier, its inverse), the block's LayerNorms with biases, the final `norm` without;
- the MLM head `lm_head`: dense -> GELU -> LayerNorm -> decoder with a bias, untied (no tied weights: transformers
  ties none whatever tie_word_embeddings says);
- EsmcForSequenceClassification's head (dense -> tanh -> out_proj on the first token: our pooler + classifier) and
  EsmcForTokenClassification's `score` on every token.
Every LayerNorm's epsilon is torch's default, 1e-5. The chain-aware mask of `sequence_id` (several chains in one
row) is not read: llmarch takes attention_mask only. Refused: num_key_value_heads other than num_attention_heads
(transformers refuses it too), head_dim other than hidden_size / heads (the QK-norm spans hidden_size), RoPE scaling."""
from __future__ import annotations

import math

from ..config import ModelConfig
from ..errors import LlmarchError
from .bert import _W, head_rules
from .hf import FAMILIES, Family
from .llama import rope_fields, rope_parameters
from .mapping import Rule

_L, _A, _M = "esmc.layers.{i}.", "esmc.layers.{i}.self_attn.", "esmc.layers.{i}.mlp."
RULES = [
    Rule.of("esmc.embed_tokens.weight", "embed.weight"),
    *[Rule.of(tuple(_A + f"{p}_proj.{w}" for p in "qkv"), f"blocks.{{i}}.attn.qkv_proj.{w}") for w in _W],
    *[Rule.of(_A + f"o_proj.{w}", f"blocks.{{i}}.attn.o_proj.{w}") for w in _W],
    *[Rule.of(_A + f"{n}_norm.weight", f"blocks.{{i}}.attn.{n}_norm.weight") for n in "qk"],
    *[Rule.of((_M + f"gate_proj.{w}", _M + f"up_proj.{w}"), f"blocks.{{i}}.mlp.gate_up.{w}") for w in _W],
    *[Rule.of(_M + f"down_proj.{w}", f"blocks.{{i}}.mlp.down.{w}") for w in _W],
    *[Rule.of(_L + f"{hf}.{w}", f"blocks.{{i}}.{ours}.{w}") for hf, ours in
      (("input_layernorm", "ln1"), ("post_attention_layernorm", "ln2")) for w in _W],
    Rule.of("esmc.norm.weight", "ln_final.weight"),
    *[Rule.of(f"lm_head.dense.{w}", f"head_transform.dense.{w}") for w in _W],
    *[Rule.of(f"lm_head.layer_norm.{w}", f"head_transform.norm.{w}") for w in _W],
    *[Rule.of(f"lm_head.decoder.{w}", f"lm_head.{w}") for w in _W],
]
HEADS = head_rules("classifier.dense", "classifier.out_proj", "score")
IGNORE = (r"rotary_emb\.(original_)?inv_freq$",)


def _multiplier(layers: int) -> float:
    """What each sublayer's output is multiplied by: 1 / sqrt(L / 36)."""
    return 1 / math.sqrt(layers / 36)


def to_config(hf: dict) -> ModelConfig:
    d, heads, layers = hf["hidden_size"], hf["num_attention_heads"], hf["num_hidden_layers"]
    if (hf.get("num_key_value_heads") or heads) != heads or (hf.get("head_dim") or d // heads) * heads != d:
        raise LlmarchError("ESM C with num_key_value_heads other than num_attention_heads or head_dim other than "
                           "hidden_size / num_attention_heads is not supported")
    rope = rope_fields(hf)
    if rope["rope_scaling"] != "none":
        raise LlmarchError(f"ESM C with RoPE scaling {rope['rope_scaling']!r} is not supported (default RoPE only)")
    if hf.get("hidden_act", "silu") != "silu":
        raise LlmarchError(f"ESM C with hidden_act {hf['hidden_act']!r} is not supported (silu: SwiGLU)")
    attn_bias = bool(hf.get("attention_bias", False))
    return ModelConfig(
        name=hf.get("_name_or_path") or "esmc", hf_model_type="esmc", vocab_size=hf["vocab_size"], d_model=d,
        n_layers=layers, n_heads=heads, head_dim=d // heads, ffn="swiglu", ffn_hidden=hf["intermediate_size"],
        bias=bool(hf.get("mlp_bias", False)), qkv_bias=attn_bias, o_bias=attn_bias, norm="layernorm", norm_eps=1e-5,
        final_norm_bias=False, qk_norm="proj", qk_norm_bias=False, norm_placement="pre", causal=False,
        positions="rope", rope_theta=rope["rope_theta"], residual_multiplier=_multiplier(layers),
        head_transform=True, head_act="gelu", head_bias=True, tie_embeddings=False,
        context_length=hf.get("max_position_embeddings", 2048), pad_id=hf.get("pad_token_id") or 0)


def needs(cfg: ModelConfig) -> str | None:
    if cfg.norm != "layernorm" or cfg.norm_eps != 1e-5 or not cfg.norm_bias or cfg.final_norm_bias is not False \
            or cfg.qk_norm != "proj" or cfg.qk_norm_bias is not False or cfg.norm_placement != "pre" \
            or not cfg.final_norm or cfg.causal or cfg.ffn != "swiglu" or cfg.positions != "rope" \
            or cfg.rope_scaling != "none" or cfg.rotary_dim != cfg.head_dim or cfg.n_kv_heads != cfg.n_heads \
            or cfg.head_dim * cfg.n_heads != cfg.d_model or cfg.layer_types is not None or cfg.type_vocab_size \
            or cfg.o_bias != cfg.qkv_bias or cfg.embed_width != cfg.d_model or cfg.pooler_act != "tanh" \
            or not math.isclose(cfg.residual_multiplier, _multiplier(cfg.n_layers), rel_tol=1e-12) \
            or cfg.head == "lm" and not (cfg.head_transform and cfg.head_bias and cfg.head_act == "gelu"
                                         and not cfg.tie_embeddings):
        return ("pre-norm bidirectional blocks with biased LayerNorms of eps 1e-5, a bias-free final norm and "
                "QK-norm over whole projections, SwiGLU, unscaled RoPE over whole heads, no GQA, residual_multiplier "
                "1/sqrt(n_layers/36), and an untied LM head with a GELU transform and a bias")
    return None


def from_config(cfg: ModelConfig) -> dict:
    return dict(model_type="esmc", architectures=["EsmcForMaskedLM"], vocab_size=cfg.vocab_size,
                hidden_size=cfg.d_model, intermediate_size=cfg.ffn_hidden, num_hidden_layers=cfg.n_layers,
                num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_heads, head_dim=cfg.head_dim,
                hidden_act="silu", max_position_embeddings=cfg.context_length, rope_parameters=rope_parameters(cfg),
                attention_bias=cfg.qkv_bias, mlp_bias=cfg.bias, pad_token_id=cfg.pad_id, tie_word_embeddings=False)


FAMILIES.register("esmc")(Family(RULES, to_config, from_config, IGNORE, heads={
    "classify": ("EsmcForSequenceClassification", HEADS["classify"]),
    "tokens": ("EsmcForTokenClassification", HEADS["tokens"])}, base_prefix="esmc.", needs=needs))
