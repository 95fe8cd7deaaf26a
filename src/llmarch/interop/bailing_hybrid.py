"""Ling 3 (`model_type: bailing_hybrid`: Ling-3.0-Flash; inclusionAI 2026; transformers' modeling_bailing_hybrid.py):
Kimi Linear's hybrid (interop/kimi_linear.py) of Kimi Delta Attention (mixer "kda") and DeepSeek-V2's latent
attention (mixer "mla"), with DeepSeek-V3's mixture after the dense first layers, and these differences:
- the latent attention layers (the last of every layer_group_size) rotate their decoupled RoPE dims (DeepSeek's
  interleaved pairs, base rope_theta) and gate each head's output by sigmoid(x w_h) (attn_head_gate);
- the KDA layers' decay and output gate are full-rank projections, f_proj and g_proj (kda_full_gates), and the decay
  is bounded, g = kda_lower_bound * sigmoid(exp(A) (f + dt_bias)) where kda_safe_gate (kda_gate_bound);
- checkpoints name the embeddings `word_embeddings`, every mixer `attention.`, its output projection `dense`, and the
  expert bias `gate.expert_bias`; the KDA layers' q, k, v convolutions are stored apart, as ours.
The multi-token-prediction layers stored after the last one (num_nextn_predict_layers) are not read. SwiGLU clipping
(nonzero expert_swiglu_limit_list or share_expert_swiglu_limit_list) is refused."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .deepseek_v2 import moe_rules
from .hf import FAMILIES, Family
from .kimi_linear import FULL, LINEAR, hybrid_hf, hybrid_needs, to_config as kimi_config
from .llama import IGNORE, rope_fields, rope_parameters
from .mapping import Rule

_L, _A, _B, _M = "model.layers.{i}.", "model.layers.{i}.attention.", "blocks.{i}.", "model.layers.{i}.mlp."
_KDA = ("q_proj", "k_proj", "v_proj", "q_conv1d", "k_conv1d", "v_conv1d", "f_proj", "g_proj", "b_proj", "o_norm")
RULES = [
    Rule.of("model.word_embeddings.weight", "embed.weight"),
    *[Rule.of(_A + f"{t}.weight", _B + f"mixer.{t}.weight") for t in _KDA],
    *[Rule.of(_A + t, _B + f"mixer.{t}") for t in ("A_log", "dt_bias")],
    Rule.of(_A + "dense.weight", _B + "mixer.o_proj.weight"),
    Rule.of(_A + "q_proj.weight", _B + "attn.q_proj.weight", "mla_q"),
    *[Rule.of(_A + f"q_a_proj.{w}", _B + f"attn.q_a_proj.{w}") for w in ("weight", "bias")],
    Rule.of(_A + "q_a_layernorm.weight", _B + "attn.q_a_norm.weight"),
    Rule.of(_A + "q_b_proj.weight", _B + "attn.q_b_proj.weight", "mla_q"),
    *[Rule.of(_A + f"kv_a_proj_with_mqa.{w}", _B + f"attn.kv_a_proj.{w}", "mla_kv_a") for w in ("weight", "bias")],
    Rule.of(_A + "kv_a_layernorm.weight", _B + "attn.kv_a_norm.weight"),
    Rule.of(_A + "kv_b_proj.weight", _B + "attn.kv_b_proj.weight"),
    *[Rule.of(_A + f"dense.{w}", _B + f"attn.o_proj.{w}") for w in ("weight", "bias")],
    Rule.of(_A + "g_proj.weight", _B + "attn.g_proj.weight"),
    Rule.of((_M + "gate_proj.weight", _M + "up_proj.weight"), _B + "mlp.gate_up.weight"),
    Rule.of(_M + "down_proj.weight", _B + "mlp.down.weight"),
    *moe_rules(bias="gate.expert_bias"),
    Rule.of(_L + "input_layernorm.weight", _B + "ln1.weight"),
    Rule.of(_L + "post_attention_layernorm.weight", _B + "ln2.weight"),
    Rule.of("model.norm.weight", "ln_final.weight"),
    Rule.of("lm_head.weight", "lm_head.weight"),
]
STACKED = [Rule.of(_M + "experts.gate_up_proj", _B + "mlp.experts.gate_up"),
           Rule.of(_M + "experts.down_proj", _B + "mlp.experts.down")]
# what transformers' BailingHybridConfig assumes where config.json is silent, each under every name its attribute_map
# gives the field (a default applies only where none of them is set)
DEFAULTS = {("num_local_experts", "num_experts"): 512, ("num_experts_per_tok", "num_experts_per_token"): 8,
            ("n_shared_experts", "num_shared_experts"): 1, ("n_group", "num_expert_group"): 8, ("topk_group",): 4,
            ("routed_scaling_factor",): 2.5, ("first_k_dense_replace",): 2, ("rms_norm_eps",): 1e-6,
            ("max_position_embeddings", "model_max_length"): 262144, ("tie_word_embeddings",): False,
            ("kv_lora_rank",): 512, ("qk_nope_head_dim",): 128, ("qk_rope_head_dim",): 64, ("v_head_dim",): 128,
            ("rope_theta",): 6_000_000.0, ("head_dim",): 128, ("short_conv_kernel_size",): 4,
            ("layer_group_size",): 6, ("kda_safe_gate",): True, ("kda_lower_bound",): -5.0}
_LIMITS = ("expert_swiglu_limit_list", "swiglu_limits", "share_expert_swiglu_limit_list", "swiglu_limits_shared")


def to_config(hf: dict) -> ModelConfig:
    hf = dict(hf)
    for names, value in DEFAULTS.items():
        if all(hf.get(n) is None for n in names):
            hf[names[0]] = value
    if any(any(hf.get(n) or []) for n in _LIMITS):
        raise LlmarchError("bailing_hybrid: SwiGLU clipping (a nonzero expert_swiglu_limit_list or "
                           "share_expert_swiglu_limit_list entry) is not supported")
    n, group = hf["num_hidden_layers"], int(hf["layer_group_size"])
    types = hf.get("layer_types") or [FULL if (i + 1) % group == 0 else LINEAR for i in range(n)]
    rope = rope_fields({**hf, "rope_parameters": hf.get("rope_parameters")
                        or {"rope_type": "default", "rope_theta": hf["rope_theta"]}})
    # transformers' config sets head_dim to qk_rope_head_dim after reading the KDA heads' width from it, and saves
    # both linear_head_dim and the changed head_dim: linear_head_dim where it is there, else head_dim
    named = dict(hf, layer_types=types, linear_head_dim=hf.get("linear_head_dim") or hf["head_dim"],
                 linear_num_heads=hf.get("linear_num_heads") or hf["num_attention_heads"],
                 linear_conv_kernel_dim=hf.get("linear_conv_kernel_dim") or hf["short_conv_kernel_size"])
    return kimi_config(named).replace(
        positions="rope", **rope, attn_head_gate=True, kda_full_gates=True,
        kda_gate_bound=float(hf["kda_lower_bound"]) if hf["kda_safe_gate"] else None)


def needs(cfg: ModelConfig) -> str | None:
    if not (cfg.kda_full_gates and cfg.attn_head_gate):
        return "KDA's full-rank gates (kda_full_gates) and a head gate on the latent attention (attn_head_gate)"
    return hybrid_needs(cfg, "rope")


def from_config(cfg: ModelConfig) -> dict:
    problem = needs(cfg)
    if problem:
        raise LlmarchError(f"model_type bailing_hybrid needs {problem}")
    out = hybrid_hf(cfg, "bailing_hybrid", "BailingHybridForCausalLM")
    out.update(rope_parameters=rope_parameters(cfg), rope_theta=cfg.rope_theta, head_dim=out["linear_head_dim"],
               short_conv_kernel_size=cfg.ssm_conv, kda_safe_gate=cfg.kda_gate_bound is not None,
               kda_lower_bound=-5.0 if cfg.kda_gate_bound is None else cfg.kda_gate_bound,
               first_k_dense_replace=out["mlp_layer_types"].count("dense"))
    return out


FAMILIES.register("bailing_hybrid")(Family(RULES, to_config, from_config, IGNORE, stacked_experts=STACKED,
                                           needs=needs, mtp=True))
