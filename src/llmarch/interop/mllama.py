"""Llama 3.2 Vision's language model (`model_type: mllama_text_model`, MllamaForCausalLM; Meta 2024, "The Llama 3
Herd of Models", §7.3): LLaMA's layers (llama.py's rules: GQA, RoPE with LLaMA's scalings, SwiGLU, RMSNorm pre-norm,
no biases, an untied head) with a cross-attention layer over image states at each index of `cross_attention_layers`
(model.layers.{i}.cross_attn.*, q_norm and k_norm per head, tanh gates cross_attn_attn_gate and cross_attn_mlp_gate,
its own norms and MLP). The text-only forward skips those layers whole (MllamaTextModel.forward), so they are blocks
of layer type `cross_attention` with mixer 'vision_cross' (layers/vision_cross.py): the identity, holding the layer's
weights for the round trip. The embedding table has 8 rows past the head's vocab_size (the image tokens'): our
vocab_size is vocab_size + 8 and head_vocab the head's rows. head_dim is hidden_size / heads whatever config.json
says; `dropout` (training only) is not read.

`mllama` checkpoints (MllamaForConditionalGeneration) read whole: the text model from text_config, its weights under
model.language_model.* (transformers 5) or language_model.model.* (as published), the vision model and projector by
mllama_vision.py; with them the cross-attention layers read the image states (layers/vision_cross.py)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .expressible import refuse_unless_read_back
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES, llama_like_config, llama_like_hf
from .mapping import Rule
from .mllama_vision import canonical_name, vision_fields, vision_hf, vision_rules
from .multimodal import text_rules

IMAGE_ROWS = 8  # MllamaTextModel's embedding holds vocab_size + 8 rows
CROSS = "cross_attention"  # the layer type of the cross-attention layers
# MllamaTextConfig's defaults, for fields a config.json leaves out
DEFAULTS = dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=40,
                num_attention_heads=32, num_key_value_heads=8, hidden_act="silu", max_position_embeddings=131072,
                rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=False,
                cross_attention_layers=[3, 8, 13, 18, 23, 28, 33, 38])
_L, _X = "model.layers.{i}.", "blocks.{i}.mixer."
_CROSS_NAMES = [("cross_attn.q_proj.weight", "q_proj.weight"), ("cross_attn.k_proj.weight", "k_proj.weight"),
                ("cross_attn.v_proj.weight", "v_proj.weight"), ("cross_attn.o_proj.weight", "o_proj.weight"),
                ("cross_attn.q_norm.weight", "q_norm.weight"), ("cross_attn.k_norm.weight", "k_norm.weight"),
                ("cross_attn_attn_gate", "attn_gate"), ("cross_attn_mlp_gate", "mlp_gate"),
                ("input_layernorm.weight", "input_norm.weight"),
                ("post_attention_layernorm.weight", "post_norm.weight"),
                ("mlp.down_proj.weight", "mlp.down.weight")]
# the cross-attention layers' tensors: a rule fills only the blocks that hold its tensor, so the self-attention
# layers' rules (llama.py's, under the same names) and these never meet
CROSS_RULES = [*[Rule.of(_L + hf, _X + ours) for hf, ours in _CROSS_NAMES],
               Rule.of((_L + "mlp.gate_proj.weight", _L + "mlp.up_proj.weight"), _X + "mlp.gate_up.weight")]


def to_config(hf: dict) -> ModelConfig:
    hf = {**DEFAULTS, **hf, "model_type": "mllama_text_model"}
    if hf["tie_word_embeddings"]:
        raise LlmarchError("mllama_text_model with tie_word_embeddings: its embedding has 8 rows past the head's; "
                           "only an untied head is supported")
    n, cross = hf["num_hidden_layers"], sorted(set(hf["cross_attention_layers"] or ()))
    if any(not 0 <= i < n for i in cross):
        raise LlmarchError(f"mllama_text_model: cross_attention_layers {cross} lie outside layers 0..{n - 1}")
    types = [CROSS if i in cross else "self_attention" for i in range(n)]
    head_dim = hf["hidden_size"] // hf["num_attention_heads"]  # as MllamaTextSelfAttention computes it
    pad = hf.get("pad_token_id")
    return llama_like_config({**hf, "head_dim": head_dim}, vocab_size=hf["vocab_size"] + IMAGE_ROWS,
                             head_vocab=hf["vocab_size"], pad_id=0 if pad is None else pad,
                             layer_types=types if cross else None,
                             layer_overrides={CROSS: {"mixer": "vision_cross"}} if cross else None)


def from_config(cfg: ModelConfig) -> dict:
    if cfg.head_vocab != cfg.vocab_size - IMAGE_ROWS:
        raise LlmarchError(f"model_type mllama_text_model needs an embedding of head_vocab + {IMAGE_ROWS} rows, got "
                           f"vocab_size={cfg.vocab_size} and head_vocab={cfg.head_vocab}")
    cross = [i for i, t in enumerate(cfg.layer_types or ()) if t == CROSS]
    # the padding id is the embedding's padding_idx in transformers, within the table; bos_token_id (an int) is left
    # to its default, read by nothing
    hf = llama_like_hf(cfg, architectures=["MllamaForCausalLM"], model_type="mllama_text_model",
                       vocab_size=cfg.head_vocab, cross_attention_layers=cross, pad_token_id=cfg.pad_id,
                       eos_token_id=None)
    for name in ("head_dim", "attention_bias", "mlp_bias"):  # not MllamaTextConfig's (no biases, head_dim d / H)
        hf.pop(name)
    return refuse_unless_read_back(cfg, hf, to_config)


def wrapper_config(hf: dict) -> ModelConfig:
    """The multimodal `mllama` (MllamaForConditionalGeneration): its text_config, read as mllama_text_model, with
    its vision_config as the vision dict (mllama_vision.py)."""
    cfg = to_config({**(hf.get("text_config") or {}), "_name_or_path": hf.get("_name_or_path")})
    return cfg.replace(vision=vision_fields(hf, cfg.d_model), hf_model_type="mllama")


def wrapper_hf(cfg: ModelConfig) -> dict:
    text = from_config(cfg.replace(vision=None, hf_model_type="mllama_text_model"))
    text.pop("architectures")
    return dict(model_type="mllama", architectures=["MllamaForConditionalGeneration"], text_config=text,
                **vision_hf(cfg))


FAMILIES.register("mllama_text_model")(Family(RULES + CROSS_RULES, to_config, from_config, IGNORE))
FAMILIES.register("mllama")(Family(text_rules(RULES + CROSS_RULES), wrapper_config, wrapper_hf, IGNORE,
                                   canonical=canonical_name, tied_by_checkpoint=True, more_rules=vision_rules))
