"""Beam (`model_type: beam`; Reflection AI's Beam-1.0, transformers' BeamForCausalLM): Qwen3-MoE's attention with a
per-head RMSNorm on q and k (qk_norm 'head') and an output gate, sigmoid(x W_g + b_h) times each head dim's output
before o_proj (attn_output_gate, `gate_proj` stored apart and joined into our qkv_proj per head: mapping.JOINS
"gated_q"; its per-head bias `gate_bias`: attn_gate_bias); layer types: `sliding_attention` layers over
sliding_window keys with RoPE, `full_attention` ones (every sixth and the last by default) over every key with no
positions, their queries times (1 + (p + 1) / 2048) ** 0.1 at position p (attn_temp_power; the log-length scaling of
Nakanishi 2025, "Scalable-Softmax Is Superior for Attention", in exp(0.1 ln(.)) form); sandwich norms
(input_layernorm, post_attention_layernorm, pre_feedforward_layernorm, post_feedforward_layernorm), each sublayer's
output joining the stream by the depth-scaled add x sqrt((k - 1) / k) + y / sqrt(k) at the stack's k-th add
(residual_mix 'depth_scaled'); `mlp_layer_types` dense SwiGLU layers first, then DeepSeek-V3's routing: sigmoid
scores plus an expert bias for the choice among the experts of the topk_group best of n_group groups, the chosen
scores renormalised (norm_topk_prob) and the mixture's output times routed_scaling_factor (no shared experts); the
LM head's logits soft-capped at final_logit_softcapping. Beam computes its SwiGLU products in fp32, which llmarch's
fp32 models do throughout."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .deepseek_v2 import moe_rules
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf, rope_fields, rope_parameters
from .mapping import Rule
from .mixtral import STACKED
from .qwen3 import FULL, SLIDING

_A, _L, _B = "model.layers.{i}.self_attn.", "model.layers.{i}.", "blocks.{i}."
RULES = [r for r in LLAMA_RULES if "layernorm" not in r.hf[0] and ".qkv_proj." not in r.ours] + [
    Rule.of(tuple(_A + f"{p}_proj.weight" for p in ("q", "gate", "k", "v")), _B + "attn.qkv_proj.weight", "gated_q"),
    *[Rule.of(_A + f"{n}_norm.weight", _B + f"attn.{n}_norm.weight") for n in "qk"],
    Rule.of(_A + "gate_bias", _B + "attn.gate_bias"),
    Rule.of(_L + "input_layernorm.weight", _B + "ln1.weight"),
    Rule.of(_L + "post_attention_layernorm.weight", _B + "post_ln1.weight"),
    Rule.of(_L + "pre_feedforward_layernorm.weight", _B + "ln2.weight"),
    Rule.of(_L + "post_feedforward_layernorm.weight", _B + "post_ln2.weight"),
    *[r for r in moe_rules() if ".shared" not in r.ours],
]
# BeamAttention's query scaling on its NoPE layers: (1 + (p + 1) / 2048) ** 0.1
_TEMP_POWER, _TEMP_FLOOR = 0.1, 2048
_NOPE = {"positions": "none", "attn_temp_power": _TEMP_POWER}
# BeamConfig's defaults for what a config.json may leave out
DEFAULTS = dict(hidden_act="silu", rms_norm_eps=1e-6, head_dim=128, sliding_window=512, moe_intermediate_size=2560,
                num_experts=256, num_experts_per_tok=8, norm_topk_prob=True, n_group=8, topk_group=4,
                routed_scaling_factor=2.5, final_logit_softcapping=30.0, max_position_embeddings=8192)


def _layer_types(hf: dict) -> tuple[list[str], list[str]]:
    """BeamConfig's layer types (every sixth and the last full) and MLP types (three dense, then sparse)."""
    n = hf["num_hidden_layers"]
    types = hf.get("layer_types") or [SLIDING if (i + 1) % 6 else FULL for i in range(n - 1)] + [FULL]
    mlps = hf.get("mlp_layer_types") or ["dense"] * min(3, n) + ["sparse"] * (n - min(3, n))
    return list(types)[:n], list(mlps)


def _rope(hf: dict, types: list[str]) -> dict:
    params = hf.get("rope_parameters") or {SLIDING: {"rope_type": "default", "rope_theta": 10000.0}, FULL: None}
    if SLIDING not in params and "rope_type" in params:
        raise LlmarchError("beam: rope_parameters must name each layer type (sliding_attention, full_attention)")
    if params.get(FULL) is not None or (SLIDING in types and params.get(SLIDING) is None):
        raise LlmarchError("beam: only sliding_attention layers with RoPE and full_attention layers without positions "
                           "are supported")
    return rope_fields({"rope_parameters": params.get(SLIDING) or {}})


def to_config(hf: dict) -> ModelConfig:
    hf = {**DEFAULTS, **hf}
    if hf.get("attention_bias"):
        raise LlmarchError("beam: attention_bias is not supported")
    if hf.get("sliding_window") is None:
        raise LlmarchError("beam: sliding_window null is not supported")
    types, mlps = _layer_types(hf)
    if set(types) - {FULL, SLIDING} or set(mlps) - {"dense", "sparse"}:
        raise LlmarchError(f"beam: unknown layer types {sorted(set(types) | set(mlps))}")
    dense = mlps.index("sparse") if "sparse" in mlps else len(mlps)
    if "dense" in mlps[dense:]:
        raise LlmarchError(f"beam: mlp_layer_types {mlps} (dense layers after sparse ones) is not supported")
    moe = {}
    if dense < len(mlps):
        groups = hf.get("n_group") or 1
        moe = dict(n_experts=int(hf["num_experts"]), experts_per_token=int(hf["num_experts_per_tok"]),
                   expert_hidden=int(hf["moe_intermediate_size"]), router_scoring="sigmoid", expert_bias=True,
                   router_renormalize=bool(hf["norm_topk_prob"]), router_scale=float(hf["routed_scaling_factor"]),
                   router_groups=int(groups or 1), router_topk_groups=int(hf.get("topk_group") or 1),
                   moe_dense_first=dense)
    overrides = {SLIDING: {"sliding_window": int(hf["sliding_window"])}, FULL: _NOPE}
    softcap = hf.get("final_logit_softcapping")
    return llama_like_config(
        {**hf, "rope_parameters": None}, qk_norm="head", attn_output_gate=True, attn_gate_bias=True,
        norm_placement="sandwich", residual_mix="depth_scaled", attn_temp_floor=_TEMP_FLOOR, attn_temp_shift=1,
        final_softcap=None if softcap is None else float(softcap), layer_types=types,
        layer_overrides={t: f for t, f in overrides.items() if t in types}, **_rope(hf, types), **moe)


def _needs(cfg: ModelConfig) -> str | None:
    if cfg.qk_norm != "head" or not cfg.attn_output_gate or not cfg.attn_gate_bias or cfg.attn_gate_fn != "sigmoid" \
            or cfg.norm_placement != "sandwich" or cfg.residual_mix != "depth_scaled" or cfg.bias or cfg.qkv_bias \
            or cfg.o_bias or cfg.norm != "rmsnorm" or cfg.ffn != "swiglu" or cfg.sliding_window is not None \
            or cfg.attn_temp_floor != _TEMP_FLOOR or cfg.attn_temp_shift != 1 or cfg.layer_types is None \
            or set(cfg.layer_types) - {FULL, SLIDING} or (cfg.layer_overrides or {}).get(FULL, _NOPE) != _NOPE \
            or set((cfg.layer_overrides or {}).get(SLIDING, {})) != {"sliding_window"}:
        return ("a per-head QK-norm, a sigmoid output gate with a bias per head, sandwich RMSNorms with depth-scaled "
                "residual adds, SwiGLU, no biases, and sliding_attention layers (a window, RoPE) beside "
                "full_attention ones (no positions, queries times (1 + (p + 1) / 2048) ** 0.1)")
    if cfg.n_experts and (cfg.router_scoring != "sigmoid" or not cfg.expert_bias or cfg.n_shared_experts
                          or cfg.moe_period != 1 or cfg.router_bias_on_logits or cfg.capacity_factor is not None
                          or cfg.expert_capacity is not None or cfg.router_renorm_p != 1.0):
        return ("a mixture routed by sigmoid scores plus an expert bias, in groups, after the dense first layers, "
                "without shared experts")
    return None


def from_config(cfg: ModelConfig) -> dict:
    types = list(cfg.layer_types)
    n, dense = cfg.n_layers, cfg.moe_dense_first if cfg.n_experts else cfg.n_layers
    window = cfg.layer_overrides.get(SLIDING, {}).get("sliding_window", 512)
    out = llama_like_hf(cfg, architectures=["BeamForCausalLM"], layer_types=types, sliding_window=window,
                        mlp_layer_types=["dense"] * dense + ["sparse"] * (n - dense),
                        rope_parameters={SLIDING: rope_parameters(cfg), FULL: None},
                        final_logit_softcapping=cfg.final_softcap)
    if cfg.n_experts:
        # one group of every expert, its one best group: routing without groups (BeamTopKRouter always groups)
        out.update(num_experts=cfg.n_experts, num_experts_per_tok=cfg.experts_per_token,
                   moe_intermediate_size=cfg.expert_hidden, norm_topk_prob=cfg.router_renormalize,
                   routed_scaling_factor=cfg.router_scale, n_group=cfg.router_groups,
                   topk_group=cfg.router_topk_groups)
    out.pop("mlp_bias")
    return out


FAMILIES.register("beam")(Family(RULES, to_config, from_config, IGNORE, stacked_experts=STACKED, needs=_needs))
