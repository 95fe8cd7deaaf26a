"""Translated's Lara Mini (`model_type: lara_mini`, transformers' LaraMiniForCausalLM, translated/Lara-4-Mini-Base): a
hybrid of parts llmarch has, on `layer_types` of three kinds (by default linear, sliding, linear, full, sliding,
repeated):
- `linear_attention`: Qwen3.5's Gated DeltaNet (mixer gated_deltanet; query/key heads each serving
  linear_num_value_heads // linear_num_key_heads consecutive value heads), its output through a gated RMSNorm, w *
  norm(o) * silu(z);
- `sliding_attention`: Qwen3's attention (a per-head RMSNorm on q and k) over sliding_window keys, with RoPE on whole
  heads; `full_attention`: the same over every key without positions;
- plain RMSNorms (w * x / rms(x), not Qwen3-Next's 1 + w), and on every layer a mixture: experts chosen by softmax
  top-k, renormalised where norm_topk_prob, beside an ungated shared expert (Flint's block with a softmax router).
The checkpoints fuse the delta rule's input projections into one `linear_attn.in_proj` (rows q | k | v | z | b | a)
and name its norm `out_norm`; ours are Qwen3-Next's in_proj_qkvz and in_proj_ba (grouped per key head), so the one
tensor splits into two of ours (mapping.SPLITS) and is put together again on export."""
from __future__ import annotations

import torch

from ..config import ModelConfig
from ..errors import LlmarchError
from ..layers.gated_deltanet import delta_shape
from .flint import RULES as FLINT_RULES
from .hf import FAMILIES, Family
from .llama import IGNORE, llama_like_config, llama_like_hf
from .mapping import SPLITS, Rule
from .mixtral import STACKED, shared_fields
from .qwen3 import FULL, SLIDING
from .qwen3_5 import _join_ba, _join_qkvz, _split_ba, _split_qkvz

LINEAR = "linear_attention"
_L, _B = "model.layers.{i}.linear_attn.", "blocks.{i}.mixer."


def _rows(t: torch.Tensor, cfg) -> list[torch.Tensor]:
    """in_proj's rows as [q|k|v, z, b, a], checked against the config."""
    K, H, dk, dv = delta_shape(cfg)
    sizes = [2 * K * dk + H * dv, H * dv, H, H]
    if t.shape[0] != sum(sizes):
        raise LlmarchError(f"linear_attn.in_proj has {t.shape[0]} rows, the config expects {sum(sizes)}")
    return list(t.split(sizes))


SPLITS["lara_qkvz"] = (lambda t, cfg: _join_qkvz(_rows(t, cfg)[:2], cfg),
                       lambda t, cfg: torch.cat(_split_qkvz(t, cfg)))
SPLITS["lara_ba"] = (lambda t, cfg: _join_ba(_rows(t, cfg)[2:], cfg), lambda t, cfg: torch.cat(_split_ba(t, cfg)))

# the experts stacked as transformers 5 keeps them (its conversion_mapping has no per-expert names for lara_mini)
RULES = [r for r in FLINT_RULES if not r.ours.endswith("attn.sinks") and ".experts." not in r.ours] + STACKED + [
    Rule.of(_L + "in_proj.weight", _B + "in_proj_qkvz.weight", "lara_qkvz"),
    Rule.of(_L + "in_proj.weight", _B + "in_proj_ba.weight", "lara_ba"),
    Rule.of(_L + "out_norm.weight", _B + "norm.weight"),
    *[Rule.of(_L + t, _B + t) for t in ("conv1d.weight", "A_log", "dt_bias", "out_proj.weight")],
]
_PATTERN = [LINEAR, SLIDING, LINEAR, FULL, SLIDING]  # LaraMiniConfig's default layer types, repeated
_OVERRIDES = {LINEAR: {"mixer": "gated_deltanet"}, FULL: {"positions": "none"}}


def to_config(hf: dict) -> ModelConfig:
    n = hf["num_hidden_layers"]
    types = list(hf.get("layer_types") or [_PATTERN[i % 5] for i in range(n)])
    if len(types) != n or set(types) - {LINEAR, SLIDING, FULL}:
        raise LlmarchError(f"lara_mini: layer_types need {n} entries of {LINEAR}, {SLIDING} or {FULL}")
    if hf.get("attention_bias") or hf.get("hidden_act", "silu") != "silu":
        raise LlmarchError("lara_mini: attention_bias or a hidden_act other than silu is not supported")
    window = hf.get("sliding_window", 512)
    if SLIDING in types and not window:
        raise LlmarchError("lara_mini: sliding_attention layers need a positive sliding_window")
    params = hf.get("rope_parameters") or {}
    if params.get("rope_type", "default") != "default":
        raise LlmarchError(f"lara_mini: rope_type {params['rope_type']!r} is not supported (default only)")
    overrides = {t: f for t, f in {**_OVERRIDES, SLIDING: {"sliding_window": window}}.items() if t in types}
    width, shared = int(hf.get("moe_intermediate_size", 512)), int(hf.get("shared_expert_intermediate_size", 512))
    if not shared:
        raise LlmarchError("lara_mini: shared_expert_intermediate_size 0 is not supported (Lara's shared expert)")
    return llama_like_config(
        {**hf, "intermediate_size": width, "mlp_bias": False}, qk_norm="head", tie_embeddings=hf.get(
            "tie_word_embeddings", True), layer_types=types, layer_overrides=overrides or None,
        delta_heads=hf.get("linear_num_key_heads", 8), delta_value_heads=hf.get("linear_num_value_heads", 16),
        delta_key_dim=hf.get("linear_key_head_dim", 128), delta_value_dim=hf.get("linear_value_head_dim", 128),
        ssm_conv=hf.get("linear_conv_kernel_dim", 4), ssm_conv_bias=False, ssm_bias=False,
        n_experts=int(hf.get("num_experts", 128)), experts_per_token=int(hf.get("num_experts_per_tok", 4)),
        expert_hidden=width, router_renormalize=bool(hf.get("norm_topk_prob", True)),
        router_aux_loss_weight=float(hf.get("router_aux_loss_coef", 0.001)), **shared_fields(shared, width))


def _needs(cfg: ModelConfig) -> str | None:
    types = cfg.layer_types or []
    window = (cfg.layer_overrides or {}).get(SLIDING, {}).get("sliding_window")
    expected = {t: f for t, f in {**_OVERRIDES, SLIDING: {"sliding_window": window}}.items() if t in types}
    if set(types) - {LINEAR, SLIDING, FULL} or (cfg.layer_overrides or {}) != expected or cfg.sliding_window \
            or cfg.qk_norm != "head" or cfg.norm != "rmsnorm" or cfg.bias or cfg.qkv_bias or cfg.attn_output_gate \
            or cfg.ssm_conv_bias or cfg.ssm_bias or cfg.rope_fraction != 1.0 or cfg.rope_scaling != "none":
        return ("layer types linear_attention (gated_deltanet), sliding_attention (a window, RoPE) and full_attention "
                "(no positions) only, a per-head QK-norm, plain RMSNorms, no biases or output gate")
    if not cfg.n_experts or cfg.moe_period != 1 or cfg.moe_dense_first or cfg.router_scoring != "softmax" \
            or cfg.expert_bias or cfg.router_groups != 1 or cfg.router_scale != 1.0 or cfg.n_shared_experts != 1 \
            or cfg.shared_expert_gate or cfg.ffn != "swiglu":
        return "a mixture on every layer routed by softmax, beside one ungated shared SwiGLU expert"
    return None


def from_config(cfg: ModelConfig) -> dict:
    K, H, dk, dv = delta_shape(cfg)
    window = (cfg.layer_overrides or {}).get(SLIDING, {}).get("sliding_window")
    out = llama_like_hf(cfg, architectures=["LaraMiniForCausalLM"], layer_types=list(cfg.layer_types),
                        sliding_window=window or 512, linear_num_key_heads=K, linear_num_value_heads=H,
                        linear_key_head_dim=dk, linear_value_head_dim=dv, linear_conv_kernel_dim=cfg.ssm_conv,
                        num_experts=cfg.n_experts, num_experts_per_tok=cfg.experts_per_token,
                        moe_intermediate_size=cfg.expert_hidden, shared_expert_intermediate_size=cfg.shared_hidden,
                        norm_topk_prob=cfg.router_renormalize, router_aux_loss_coef=cfg.router_aux_loss_weight)
    for key in ("intermediate_size", "mlp_bias"):
        out.pop(key)
    return out


FAMILIES.register("lara_mini")(Family(RULES, to_config, from_config, IGNORE, stacked_experts=STACKED, needs=_needs))
