"""GLM-4.1V-Thinking (`model_type: glm4v`, its text model `glm4v_text`), GLM-4.5V (`glm4v_moe`, `glm4v_moe_text`) and
GLM-4.6V (`glm46v`: Hong et al. 2025, "GLM-4.1V-Thinking and GLM-4.5V"). Their text models are GLM-4's (glm.py:
sandwich norms, q, k, v biases always, RoPE turning adjacent pairs) and GLM-4.5's (glm4_moe.py: RoPE's halves, no
QK-norm) with Qwen2-VL's M-RoPE (qwen_vl.py): mrope_section's runs of frequencies turned by the temporal, height and
width positions in turn, not interleaved, over the rotated part of each head; a text token's three positions are
equal, so text alone is plain RoPE. Their tower is Qwen2.5-VL's with GLM-4V's own parts (qwen_vl_vision.py), and
images' positions are numbered as Qwen2-VL's (transformers' Glm4vModel.get_rope_index is Qwen2VLModel's for images).

GLM-4.6V's classes are GLM-4.1V's (its wrapper builds either text model, by text_config's model_type: glm4v_text or
glm4v_moe_text, and the same tower); what differs is the video prompt's timestamps, and videos are not read. So a
glm46v checkpoint is read, and written back, as the wrapper of whichever text model it holds.

Defaults where config.json leaves a field out are the text config classes': Glm4vTextConfig has no
partial_rotary_factor (the whole head turns) and no head_dim (hidden_size / heads); Glm4vMoeTextConfig is
Glm4MoeConfig's (half the head) with attention_bias on."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from ..vision.qwen_config import qwen_vision_config
from . import multimodal
from .hf import FAMILIES, Family
from .qwen_vl import KINDS, TextKind, published_name, register, stacked_rules
from .qwen_vl_vision import vision_rules

_ROPE = dict(rope_theta=10000.0)
register("glm4v_text", TextKind(
    "glm4", "glm4v", "Glm4vForConditionalGeneration",
    dict(_ROPE, vocab_size=151552, hidden_size=4096, intermediate_size=13696, num_hidden_layers=40,
         num_attention_heads=32, num_key_value_heads=2, max_position_embeddings=32768, rms_norm_eps=1e-5,
         partial_rotary_factor=1.0),
    (8, 12, 12), False, {"model_type": "glm4", "head_dim": None, "attention_bias": True},
    unread=("head_dim", "attention_bias")), FAMILIES["glm4"].rules, [])
register("glm4v_moe_text", TextKind(
    "glm4_moe", "glm4v_moe", "Glm4vMoeForConditionalGeneration",
    dict(_ROPE, vocab_size=151424, hidden_size=4096, intermediate_size=10944, num_hidden_layers=46,
         num_attention_heads=96, num_key_value_heads=8, max_position_embeddings=65536, rms_norm_eps=1e-5,
         attention_bias=True, moe_intermediate_size=1408, num_experts_per_tok=8, n_shared_experts=1,
         n_routed_experts=128, routed_scaling_factor=1.0, n_group=1, topk_group=1, first_k_dense_replace=1,
         norm_topk_prob=True, partial_rotary_factor=0.5),
    (8, 12, 12), False, {"model_type": "glm4_moe", "use_qk_norm": False},
    unread=("use_qk_norm", "num_mtp_layers")), FAMILIES["glm4_moe"].rules, FAMILIES["glm4_moe"].stacked_experts)

GLM46V, TEXT_TYPES = "glm46v", ("glm4v_text", "glm4v_moe_text")


def _glm46v_text(hf: dict) -> str:
    kind = (hf.get("text_config") or {}).get("model_type", "glm4v_text")
    if kind not in TEXT_TYPES:
        raise LlmarchError(f"glm46v with a {kind!r} text model is not supported; supported: {', '.join(TEXT_TYPES)}")
    return kind


def _text_type(cfg: ModelConfig) -> str:
    """The text model a glm46v model writes: GLM-4.5V's where it has experts."""
    return TEXT_TYPES[1] if cfg.n_experts else TEXT_TYPES[0]


def _read(hf: dict) -> ModelConfig:
    """The wrapper config as its text model's own wrapper (glm4v or glm4v_moe) reads it: the same fields."""
    return FAMILIES[KINDS[_glm46v_text(hf)].wrapper].to_config(hf).replace(hf_model_type=GLM46V)


def _write(cfg: ModelConfig) -> dict:
    wrapper = KINDS[_text_type(cfg)].wrapper
    return dict(FAMILIES[wrapper].from_config(cfg.replace(hf_model_type=wrapper)), model_type=GLM46V,
                architectures=["Glm46VForConditionalGeneration"])


def _rules(cfg: ModelConfig):
    """GLM-4.6V's MoE experts stacked: transformers converts GLM-4.5V's per-expert tensors (glm4v_moe) on load and
    back on save, not glm46v's, which it saves as its modules hold them."""
    text = FAMILIES[_text_type(cfg)].rules
    return multimodal.text_rules(stacked_rules(text) if cfg.n_experts else text) + \
        vision_rules(qwen_vision_config(cfg.vision), GLM46V)


FAMILIES.register(GLM46V)(Family([], _read, _write, FAMILIES["glm4_moe"].ignore, canonical=published_name,
                                 tied_by_checkpoint=True, stacked_experts=FAMILIES["glm4_moe"].stacked_experts,
                                 more_rules=_rules))
