"""Qwen3.5 (`model_type: qwen3_5_text`, and `qwen3_5_moe_text`; the text models of the `qwen3_5` and `qwen3_5_moe`
checkpoints): Qwen3-Next's hybrid (qwen3_next.py: Gated DeltaNet layers and gated full attention, zero-centred
RMSNorms, partial RoPE) with a dense SwiGLU MLP (qwen3_5) or on every layer Qwen3-Next's experts with a gated shared
expert (qwen3_5_moe, top-k always renormalised), and the delta rule's projections stored apart: in_proj_qkv (all
q | all k | all v rows), in_proj_z, in_proj_b, in_proj_a. llmarch fuses them grouped per key head as Qwen3-Next
stores them ([q_g k_g v_g z_g], [b_g a_g]), a join of whole tensors (mapping.JOINS) rather than stacked pieces.
The published checkpoints are vision-language ones (Qwen3_5ForConditionalGeneration,
Qwen3_5MoeForConditionalGeneration): the config is text_config, the text model's weights lie under
model.language_model., and the vision tower under model.visual. is read too (qwen_vl.register_wrapper): Qwen3-VL's
tower without DeepStack (qwen_vl_vision.py), images and videos placed as Qwen3-VL places them (vision/qwen_inputs.py:
each video frame after its timestamp, as transformers' Qwen3_5Model.get_rope_index splits video_grid_thw). The
multi-token-prediction head (mtp.) is not read, as transformers does not read it. Their text RoPE is multimodal RoPE
(Qwen3_5TextRotaryEmbedding: mrope_section, [11, 11, 10] where rope_parameters gives none, over the rotated quarter of
each head, its axes always interleaved as Qwen3-VL's): every position id is the same for text, which is plain RoPE,
and image and video tokens turn by their own (t, h, w). A text config's mrope_section is kept where it fits the
rotated pairs, to be written back."""
from __future__ import annotations

import torch

from ..config import ModelConfig
from ..errors import LlmarchError
from ..layers.gated_deltanet import delta_shape
from .hf import FAMILIES, Family
from .llama import IGNORE
from .mapping import JOINS, Rule
from .mixtral import STACKED
from .qwen3_next import RULES as NEXT_RULES, from_config as next_hf, to_config as next_config
from .qwen_vl import register_wrapper

_L = "model.layers.{i}.linear_attn."


def _join_qkvz(parts: list[torch.Tensor], cfg) -> torch.Tensor:
    """in_proj_qkv [all q | all k | all v] and in_proj_z -> our rows [q_g k_g v_g z_g] per key head g."""
    K, H, dk, dv = delta_shape(cfg)
    qkv, z = parts
    q, k, v = qkv.split([K * dk, K * dk, H * dv])
    return torch.cat([x.reshape(K, -1, x.shape[-1]) for x in (q, k, v, z)], dim=1).reshape(-1, qkv.shape[-1])


def _split_qkvz(t: torch.Tensor, cfg) -> list[torch.Tensor]:
    K, H, dk, dv = delta_shape(cfg)
    q, k, v, z = t.reshape(K, -1, t.shape[-1]).split([dk, dk, H // K * dv, H // K * dv], dim=1)
    return [torch.cat([q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1)]), z.flatten(0, 1)]


def _join_ba(parts: list[torch.Tensor], cfg) -> torch.Tensor:
    """in_proj_b and in_proj_a (a row per value head) -> our rows [b_g a_g] per key head g."""
    K, H, _, _ = delta_shape(cfg)
    return torch.cat([x.reshape(K, H // K, x.shape[-1]) for x in parts], dim=1).reshape(-1, parts[0].shape[-1])


def _split_ba(t: torch.Tensor, cfg) -> list[torch.Tensor]:
    K, H, _, _ = delta_shape(cfg)
    return [x.flatten(0, 1) for x in t.reshape(K, 2 * (H // K), t.shape[-1]).split(H // K, dim=1)]


JOINS["qwen3_5_qkvz"] = (_join_qkvz, _split_qkvz)
JOINS["qwen3_5_ba"] = (_join_ba, _split_ba)

RULES = [r for r in NEXT_RULES if not r.ours.endswith(("in_proj_qkvz.weight", "in_proj_ba.weight"))] + [
    Rule.of((_L + "in_proj_qkv.weight", _L + "in_proj_z.weight"), "blocks.{i}.mixer.in_proj_qkvz.weight",
            "qwen3_5_qkvz"),
    Rule.of((_L + "in_proj_b.weight", _L + "in_proj_a.weight"), "blocks.{i}.mixer.in_proj_ba.weight", "qwen3_5_ba"),
]
_IGNORE = IGNORE + (r"^mtp\.",)
_TEXT = {"qwen3_5": "qwen3_5_text", "qwen3_5_moe": "qwen3_5_moe_text"}
_ARCHS = {"qwen3_5_text": "Qwen3_5ForCausalLM", "qwen3_5_moe_text": "Qwen3_5MoeForCausalLM",
          "qwen3_5": "Qwen3_5ForConditionalGeneration", "qwen3_5_moe": "Qwen3_5MoeForConditionalGeneration"}
_SECTION = [11, 11, 10]  # Qwen3_5TextRotaryEmbedding's mrope_section where rope_parameters gives none


def to_config(hf: dict) -> ModelConfig:
    moe = hf["model_type"] == "qwen3_5_moe_text"
    if moe != bool(hf.get("num_experts")):
        raise LlmarchError(f"{hf['model_type']}: {'no' if moe else ''} num_experts")
    extra = dict(decoder_sparse_step=1, norm_topk_prob=True) if moe else {}
    cfg = next_config({**hf, **extra, "partial_rotary_factor": hf.get("partial_rotary_factor", 0.25)})
    section = (hf.get("rope_parameters") or {}).get("mrope_section")
    if section is not None and sum(section) == cfg.rotary_dim // 2:  # else text turns the same without it
        cfg = cfg.replace(mrope_section=list(section), mrope_interleaved=True)
    return cfg


def from_config(cfg: ModelConfig) -> dict:
    moe = cfg.hf_model_type == "qwen3_5_moe_text"
    if moe != bool(cfg.n_experts) or moe and (cfg.moe_period != 1 or not cfg.router_renormalize
                                              or not cfg.n_shared_experts):
        raise LlmarchError(f"model_type {cfg.hf_model_type} has " + (
            "experts on every layer, renormalised top-k weights and a gated shared expert" if moe else "no experts"))
    if cfg.mrope_section is not None and not cfg.mrope_interleaved:
        raise LlmarchError(f"model_type {cfg.hf_model_type} interleaves its M-RoPE axes (mrope_interleaved)")
    out = {**next_hf(cfg), "model_type": cfg.hf_model_type, "architectures": [_ARCHS[cfg.hf_model_type]]}
    if cfg.mrope_section is not None:
        out["rope_parameters"] = dict(out["rope_parameters"], mrope_section=list(cfg.mrope_section),
                                      mrope_interleaved=True)
    for key in ("decoder_sparse_step", "mlp_only_layers", "norm_topk_prob") + (() if moe else (
            "num_experts", "num_experts_per_tok", "moe_intermediate_size", "shared_expert_intermediate_size",
            "router_aux_loss_coef")):
        out.pop(key, None)
    return out


def multimodal_config(hf: dict) -> ModelConfig:
    """The text model of a Qwen3.5 vision-language config, its M-RoPE sections (the default where none are given)
    required to fit each head's rotated pairs: images' and videos' tokens turn by them."""
    text = hf.get("text_config") or {}
    cfg = to_config({**text, "model_type": _TEXT[hf["model_type"]], "_name_or_path": hf.get("_name_or_path"),
                     "tie_word_embeddings": text.get("tie_word_embeddings", hf.get("tie_word_embeddings", False))})
    if cfg.mrope_section is None:  # the config's validation refuses sections that do not fit, in one line
        section = (text.get("rope_parameters") or {}).get("mrope_section", _SECTION)
        cfg = cfg.replace(mrope_section=list(section), mrope_interleaved=True)
    return cfg


for text in ("qwen3_5_text", "qwen3_5_moe_text"):
    FAMILIES.register(text)(Family(RULES, to_config, from_config, _IGNORE, stacked_experts=STACKED))
for wrapper, text in _TEXT.items():
    register_wrapper(text, wrapper, _ARCHS[wrapper], RULES, STACKED, _IGNORE, multimodal_config)
