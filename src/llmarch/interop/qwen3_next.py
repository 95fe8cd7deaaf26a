"""Qwen3-Next (`model_type: qwen3_next`): a hybrid stack whose layer_types name each layer "linear_attention"
(a Gated DeltaNet mixer, layers/gated_deltanet.py, keeping transformers' tensor names under `linear_attn.`) or
"full_attention" (GQA with QK-norm, partial RoPE and a sigmoid output gate whose rows q_proj interleaves with the
queries' per head); zero-centred RMSNorms, y = x / rms(x) * (1 + g), everywhere but inside the delta-rule layers;
FFNs that are mixtures of SwiGLU experts plus a shared expert gated per token by sigmoid(x w) (dense where
(i + 1) % decoder_sparse_step != 0). In llmarch that is a configuration: layer_types with a "mixer" override,
attn_output_gate, rope_fraction, norm="rmsnorm_offset", shared_expert_gate. The multi-token-prediction head
that published checkpoints carry (`mtp.*`) is not part of the model and is skipped, as transformers skips it."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from ..layers.gated_deltanet import delta_shape
from .hf import FAMILIES, Family
from .llama import IGNORE, llama_like_config, llama_like_hf, rope_fraction, rope_parameters
from .mapping import Rule
from .mixtral import moe_fields, shared_fields
from .qwen3_moe import RULES as QWEN3_MOE_RULES

_L = "model.layers.{i}."
_DELTA = ("in_proj_qkvz.weight", "in_proj_ba.weight", "conv1d.weight", "A_log", "dt_bias", "norm.weight",
          "out_proj.weight")
RULES = QWEN3_MOE_RULES + [  # Qwen3-MoE's attention QK-norm and experts, and:
    *[Rule.of(_L + "linear_attn." + t, "blocks.{i}.mixer." + t) for t in _DELTA],
    Rule.of((_L + "mlp.shared_expert.gate_proj.weight", _L + "mlp.shared_expert.up_proj.weight"),
            "blocks.{i}.mlp.shared.gate_up.weight"),
    Rule.of(_L + "mlp.shared_expert.down_proj.weight", "blocks.{i}.mlp.shared.down.weight"),
    Rule.of(_L + "mlp.shared_expert_gate.weight", "blocks.{i}.mlp.shared_gate.weight"),
]
LINEAR, FULL = "linear_attention", "full_attention"


def _layer_types(hf: dict) -> list[str]:
    """transformers' default when config.json has none: full attention every full_attention_interval layers."""
    if hf.get("layer_types"):
        return list(hf["layer_types"])
    every = int(hf.get("full_attention_interval", 4))
    return [FULL if (i + 1) % every == 0 else LINEAR for i in range(hf["num_hidden_layers"])]


def _moe(hf: dict) -> dict:
    if not hf.get("num_experts"):
        return {}
    if hf.get("mlp_only_layers"):
        raise LlmarchError("Qwen3-Next with mlp_only_layers is not supported (use decoder_sparse_step)")
    step, width, shared = int(hf.get("decoder_sparse_step", 1)), hf["moe_intermediate_size"], \
        int(hf.get("shared_expert_intermediate_size", 0))
    return dict(expert_hidden=width, moe_period=step, moe_offset=step - 1, **shared_fields(shared, width),
                shared_expert_gate=shared > 0, router_renormalize=bool(hf.get("norm_topk_prob", True)),
                **moe_fields(hf))


def to_config(hf: dict) -> ModelConfig:
    if hf.get("hidden_act", "silu") != "silu":
        raise LlmarchError(f"qwen3_next: hidden_act {hf['hidden_act']!r} is not supported (silu only)")
    types = _layer_types(hf)
    if set(types) - {LINEAR, FULL}:
        raise LlmarchError(f"qwen3_next: unknown layer type {sorted(set(types) - {LINEAR, FULL})[0]!r}")
    return llama_like_config(
        hf, norm="rmsnorm_offset", qk_norm="head", attn_output_gate=True, rope_fraction=rope_fraction(hf, 0.25),
        layer_types=types, layer_overrides={LINEAR: {"mixer": "gated_deltanet"}} if LINEAR in types else None,
        delta_heads=hf.get("linear_num_key_heads", 16), delta_value_heads=hf.get("linear_num_value_heads", 32),
        delta_key_dim=hf.get("linear_key_head_dim", 128), delta_value_dim=hf.get("linear_value_head_dim", 128),
        ssm_conv=hf.get("linear_conv_kernel_dim", 4), ssm_conv_bias=False, ssm_bias=False, **_moe(hf))


def from_config(cfg: ModelConfig) -> dict:
    shape_ok = (cfg.norm == "rmsnorm_offset" and cfg.qk_norm == "head" and cfg.attn_output_gate
                and cfg.ffn == "swiglu" and not cfg.ssm_conv_bias and not cfg.ssm_bias and cfg.attn_period == 0)
    mixers = {cfg.layer_mixer(i) for i in range(cfg.n_layers)}
    if not shape_ok or mixers - {"attention", "gated_deltanet"}:
        raise LlmarchError("model_type qwen3_next needs attention (with QK-norm and an output gate) and "
                           "gated_deltanet layers (without conv or projection biases), rmsnorm_offset and swiglu")
    if cfg.n_experts and (cfg.moe_offset != cfg.moe_period - 1 or cfg.capacity_factor is not None
                          or cfg.expert_capacity is not None or cfg.shared_expert_gate != bool(cfg.n_shared_experts)):
        raise LlmarchError("model_type qwen3_next's experts sit where (i + 1) % moe_period == 0, without capacity, "
                           "with a gated shared expert (or none)")
    K, H, dk, dv = delta_shape(cfg)
    moe = dict(num_experts=cfg.n_experts, num_experts_per_tok=cfg.experts_per_token,
               moe_intermediate_size=cfg.expert_hidden, shared_expert_intermediate_size=cfg.shared_hidden
               if cfg.n_shared_experts else 0, decoder_sparse_step=cfg.moe_period, mlp_only_layers=[],
               norm_topk_prob=cfg.router_renormalize, router_aux_loss_coef=cfg.router_aux_loss_weight)
    out = llama_like_hf(
        cfg, architectures=["Qwen3NextForCausalLM"], **moe,
        layer_types=[LINEAR if cfg.layer_mixer(i) == "gated_deltanet" else FULL for i in range(cfg.n_layers)],
        linear_num_key_heads=K, linear_num_value_heads=H, linear_key_head_dim=dk, linear_value_head_dim=dv,
        linear_conv_kernel_dim=cfg.ssm_conv, rope_parameters=rope_parameters(cfg, partial=True))
    out.pop("mlp_bias")
    return out


FAMILIES.register("qwen3_next")(Family(RULES, to_config, from_config, IGNORE + (r"^mtp\.",)))
