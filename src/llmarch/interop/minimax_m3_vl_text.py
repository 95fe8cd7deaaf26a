"""MiniMax-M3's language model (`model_type: minimax_m3_vl_text`, transformers' MiniMaxM3VLForCausalLM, the text model
of `minimax_m3_vl`, MiniMaxAI/MiniMax-M3): MiniMax-M2's decoder (m2: sigmoid-routed experts with an expert bias,
renormalised) with
- Gemma's zero-centred RMSNorms, x / rms(x) * (1 + w), everywhere, the QK-norm per head (qk_norm 'head', not M2's
  over the whole projection);
- gpt-oss's clamped SwiGLU in every MLP, (clamp(up, -l, l) + 1) * g * sigmoid(alpha g), g = min(gate, l)
  (ffn 'swiglu_clamped', swiglu_alpha, swiglu_limit), with gate and up fused as gate_up_proj (gate rows first);
- the routed experts' output times routed_scaling_factor (router_scale), plus an ungated shared MLP of
  shared_intermediate_size; `mlp_layer_types` 'dense' layers an MLP of dense_intermediate_size (the first k only);
- RoPE on the first partial_rotary_factor of each head as rope_parameters gives it: transformers 5.25's text model
  does not read `rotary_dim` (a factor absent from rope_parameters rotates whole heads), and neither does llmarch.
Refused: the block-sparse `minimax_m3_sparse` attention layers (a lightning indexer choosing blocks of keys per
query), which llmarch does not implement. The vision tower and projector of `minimax_m3_vl` are not read."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .deepseek_v2 import dense_first, first_dense
from .hf import FAMILIES, Family
from .llama import IGNORE, llama_like_config, llama_like_hf, rope_fraction, rope_parameters
from .mapping import Rule
from .mixtral import shared_fields
from .qwen3 import RULES as QWEN3_RULES

_M, _B = "model.layers.{i}.mlp.", "blocks.{i}.mlp."
RULES = [r for r in QWEN3_RULES if ".mlp." not in r.ours] + [
    Rule.of(_M + "gate_up_proj.weight", _B + "gate_up.weight"),
    Rule.of(_M + "down_proj.weight", _B + "down.weight"),
    Rule.of(_M + "gate.weight", _B + "router.weight"),
    Rule.of(_M + "gate.e_score_correction_bias", _B + "router.expert_bias"),
    Rule.of(_M + "experts.gate_up_proj", _B + "experts.gate_up"),
    Rule.of(_M + "experts.down_proj", _B + "experts.down"),
    Rule.of(_M + "shared_experts.gate_up_proj.weight", _B + "shared.gate_up.weight"),
    Rule.of(_M + "shared_experts.down_proj.weight", _B + "shared.down.weight"),
]
FULL = "full_attention"


def to_config(hf: dict) -> ModelConfig:
    n = hf["num_hidden_layers"]
    types = list(hf.get("layer_types") or [FULL] * n)
    if set(types) != {FULL}:
        raise LlmarchError(f"minimax_m3_vl_text: layer types {sorted(set(types) - {FULL})} are not supported (the "
                           "block-sparse minimax_m3_sparse attention is not implemented)")
    kinds = list(hf.get("mlp_layer_types") or ["sparse"] * n)
    k = dense_first({**hf, "mlp_layer_types": kinds})
    if kinds != ["dense"] * k + ["sparse"] * (n - k):
        raise LlmarchError(f"minimax_m3_vl_text: mlp_layer_types {kinds} are not supported (llmarch's dense layers "
                           "are the first k)")
    width = int(hf.get("intermediate_size", 3072))
    return llama_like_config(
        {**hf, "intermediate_size": int(hf.get("dense_intermediate_size", 12288)), "hidden_act": "silu",
         "attention_bias": False, "mlp_bias": False}, norm="rmsnorm_offset", qk_norm="head", ffn="swiglu_clamped",
        swiglu_alpha=float(hf.get("swiglu_alpha", 1.702)), swiglu_limit=float(hf.get("swiglu_limit", 7.0)),
        rope_fraction=rope_fraction(hf, 1.0), n_experts=int(hf.get("num_local_experts", 128)),
        experts_per_token=int(hf.get("num_experts_per_tok", 4)), expert_hidden=width, moe_dense_first=k,
        router_scoring="sigmoid", expert_bias=True, router_renormalize=True,
        router_scale=float(hf.get("routed_scaling_factor", 2.0)),
        router_aux_loss_weight=float(hf.get("router_aux_loss_coef", 0.001)),
        **shared_fields(int(hf.get("shared_intermediate_size", 3072)), width))


def _needs(cfg: ModelConfig) -> str | None:
    if cfg.norm != "rmsnorm_offset" or cfg.qk_norm != "head" or cfg.ffn != "swiglu_clamped" or cfg.expert_ffn \
            or cfg.bias or cfg.qkv_bias or cfg.layer_types is not None or cfg.sliding_window is not None:
        return "zero-centred RMSNorms, a per-head QK-norm, clamped SwiGLUs, no biases, windows or layer types"
    if not cfg.n_experts or cfg.router_scoring != "sigmoid" or not cfg.expert_bias or not cfg.router_renormalize \
            or cfg.router_groups != 1 or cfg.router_bias_on_logits or not cfg.n_shared_experts \
            or cfg.shared_expert_gate or cfg.moe_period != 1:
        return ("mixtures after the first dense layers, routed by sigmoid scores with an expert bias, renormalised, "
                "beside an ungated shared MLP")
    return None


def from_config(cfg: ModelConfig) -> dict:
    k = first_dense(cfg)
    # hidden_act: silu, as the config class sets it whatever the file says (the clamped gate is computed inline)
    out = llama_like_hf(cfg.replace(ffn="swiglu"), architectures=["MiniMaxM3VLForCausalLM"],
                        intermediate_size=cfg.expert_hidden, dense_intermediate_size=cfg.ffn_hidden,
                        shared_intermediate_size=cfg.shared_hidden,
                        mlp_layer_types=["dense"] * k + ["sparse"] * (cfg.n_layers - k),
                        layer_types=[FULL] * cfg.n_layers, num_local_experts=cfg.n_experts,
                        num_experts_per_tok=cfg.experts_per_token, routed_scaling_factor=cfg.router_scale,
                        router_aux_loss_coef=cfg.router_aux_loss_weight, swiglu_alpha=cfg.swiglu_alpha,
                        swiglu_limit=cfg.swiglu_limit, rotary_dim=cfg.rotary_dim,
                        rope_parameters=rope_parameters(cfg, partial=True))
    for key in ("attention_bias", "mlp_bias"):
        out.pop(key)
    return out


FAMILIES.register("minimax_m3_vl_text")(Family(RULES, to_config, from_config, IGNORE + (r"(^|\.)mtp\.",),
                                               needs=_needs))
