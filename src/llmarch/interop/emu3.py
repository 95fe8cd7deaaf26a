"""Emu3's text model (`model_type: emu3_text_model`, Emu3ForCausalLM; Wang et al. 2024, "Emu3: Next-Token Prediction
is All You Need", §2.2): LLaMA's layout and computation (llama.py's rules: RMSNorm pre-norm blocks, GQA, RoPE in
halves with LLaMA's scalings, SwiGLU, an untied head) over a vocabulary of text and visual tokens. What differs from
LLaMA is its config: RoPE base 1e6, RMSNorm eps 1e-5, 8 key/value heads, a context of 9216 by default, and
`attention_bias` (a bias on q, k, v and o) apart from `mlp_bias` (the MLP's), so o_proj's bias follows the
attention's here (`o_bias`), not the MLP's. Its `attention_dropout` also drops each sublayer's output before the
residual add (training only; not read, as the LLaMA families' dropouts are not).

`emu3` checkpoints (Emu3ForConditionalGeneration: text, images as visual tokens of a VQ-VAE) are read as their text
model: the config is text_config, the weights under model.text_model.* (as transformers 5 saves them) or
text_model.model.* (as published); the VQ-VAE (`vqmodel`) is not read; written back as emu3_text_model."""
from __future__ import annotations

from ..config import ModelConfig
from . import multimodal
from .expressible import refuse_unless_read_back
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES, llama_like_config, llama_like_hf

# Emu3TextConfig's defaults, for fields a config.json leaves out
DEFAULTS = dict(vocab_size=184622, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=8, hidden_act="silu", max_position_embeddings=9216,
                rms_norm_eps=1e-5, rope_theta=1000000.0, tie_word_embeddings=False)


def to_config(hf: dict) -> ModelConfig:
    hf = {**DEFAULTS, **hf, "model_type": "emu3_text_model"}
    attn, mlp = bool(hf.get("attention_bias", False)), bool(hf.get("mlp_bias", False))
    # llama_like_config reads one bias for o_proj and the MLP: here that is mlp_bias, and attention_bias q, k, v, o's
    pad = hf.get("pad_token_id", 151643)  # Emu3TextConfig's: an int, never None
    return llama_like_config({**hf, "attention_bias": mlp}, qkv_bias=attn, o_bias=attn, pad_id=pad)


def from_config(cfg: ModelConfig) -> dict:
    # eos from the model's eos_id or the tokenizer written beside (Emu3TextConfig's default lies past a smaller
    # vocabulary; its bos_token_id, an int, is left to its default, read by nothing); the padding id is the
    # embedding's padding_idx there, which must lie within the vocabulary
    hf = llama_like_hf(cfg, architectures=["Emu3ForCausalLM"], model_type="emu3_text_model",
                       attention_bias=cfg.qkv_bias, pad_token_id=cfg.pad_id, eos_token_id=None)
    return refuse_unless_read_back(cfg, hf, to_config)


def wrapper_config(hf: dict) -> ModelConfig:
    """The multimodal `emu3` (Emu3ForConditionalGeneration): its text_config, read as emu3_text_model."""
    return to_config({**(hf.get("text_config") or {}), "_name_or_path": hf.get("_name_or_path")})


FAMILIES.register("emu3_text_model")(Family(RULES, to_config, from_config, IGNORE))
multimodal.register("emu3", FAMILIES["emu3_text_model"], wrapper_config, "emu3_text_model",
                    (r"^(model\.)?vqmodel\.",), under="text_model")
