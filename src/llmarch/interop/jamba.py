"""Jamba (`model_type: jamba`, Lieber et al. 2024): a hybrid stack. Layer i's mixer is attention (GQA, no
positions at all) where i % attn_layer_period == attn_layer_offset and Mamba elsewhere (with RMSNorms over
dt, B and C: ssm_inner_norm); its FFN is a mixture of SwiGLU experts (softmax, then the top-k weights
unrenormalised) where i % expert_layer_period == expert_layer_offset, a dense SwiGLU elsewhere. In llmarch
that is a configuration (mixer, attn_period, attn_offset, moe_period, moe_offset), not a model of its own."""
from __future__ import annotations

import math

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .mamba import MAMBA_TENSORS
from .mapping import Rule

_L = "model.layers.{i}."
_FF = _L + "feed_forward."
RULES = [
    Rule.of("model.embed_tokens.weight", "embed.weight"),
    Rule.of(_L + "input_layernorm.weight", "blocks.{i}.ln1.weight"),
    Rule.of(_L + "pre_ff_layernorm.weight", "blocks.{i}.ln2.weight"),
    Rule.of(tuple(_L + f"self_attn.{p}_proj.weight" for p in "qkv"), "blocks.{i}.attn.qkv_proj.weight"),
    Rule.of(_L + "self_attn.o_proj.weight", "blocks.{i}.attn.o_proj.weight"),
    *[Rule.of(_L + "mamba." + t, "blocks.{i}.mixer." + t) for t in MAMBA_TENSORS],
    *[Rule.of(_L + f"mamba.{p}_layernorm.weight", f"blocks.{{i}}.mixer.{p}_norm.weight") for p in ("dt", "b", "c")],
    Rule.of((_FF + "gate_proj.weight", _FF + "up_proj.weight"), "blocks.{i}.mlp.gate_up.weight"),
    Rule.of(_FF + "down_proj.weight", "blocks.{i}.mlp.down.weight"),
    Rule.of(_FF + "router.weight", "blocks.{i}.mlp.router.weight"),
    Rule.of((_FF + "experts.{e}.gate_proj.weight", _FF + "experts.{e}.up_proj.weight"), "blocks.{i}.mlp.experts.gate_up"),
    Rule.of(_FF + "experts.{e}.down_proj.weight", "blocks.{i}.mlp.experts.down"),
    Rule.of("model.final_layernorm.weight", "ln_final.weight"),
    Rule.of("lm_head.weight", "lm_head.weight"),
]


def to_config(hf: dict) -> ModelConfig:
    if hf.get("hidden_act", "silu") != "silu":
        raise LlmarchError(f"jamba: hidden_act {hf['hidden_act']!r} is not supported (silu only)")
    d, heads = hf["hidden_size"], hf["num_attention_heads"]
    rank = hf.get("mamba_dt_rank", "auto")
    experts = int(hf.get("num_experts", 1))
    moe = dict(n_experts=experts, experts_per_token=int(hf.get("num_experts_per_tok", 2)), router_renormalize=False,
               moe_period=int(hf.get("expert_layer_period", 2)), moe_offset=int(hf.get("expert_layer_offset", 1)),
               router_aux_loss_weight=float(hf.get("router_aux_loss_coef", 0.0))) if experts > 1 else {}
    eos = hf.get("eos_token_id")
    return ModelConfig(
        name=hf.get("_name_or_path") or "jamba", hf_model_type="jamba", vocab_size=hf["vocab_size"], d_model=d,
        n_layers=hf["num_hidden_layers"], n_heads=heads, n_kv_heads=hf.get("num_key_value_heads") or heads,
        ffn="swiglu", ffn_hidden=hf["intermediate_size"], norm="rmsnorm", norm_eps=hf.get("rms_norm_eps", 1e-6),
        positions="none", bias=False, qkv_bias=False, tie_embeddings=hf.get("tie_word_embeddings", False),
        context_length=hf.get("max_position_embeddings", 262144), mixer="mamba",
        attn_period=int(hf.get("attn_layer_period", 8)), attn_offset=int(hf.get("attn_layer_offset", 4)),
        ssm_state=hf.get("mamba_d_state", 16), ssm_conv=hf.get("mamba_d_conv", 4),
        ssm_expand=hf.get("mamba_expand", 2), ssm_dt_rank=math.ceil(d / 16) if rank == "auto" else int(rank),
        ssm_conv_bias=hf.get("mamba_conv_bias", True), ssm_bias=hf.get("mamba_proj_bias", False),
        ssm_inner_norm=True, eos_id=eos if isinstance(eos, int) else None, **moe)


def from_config(cfg: ModelConfig) -> dict:
    shape_ok = (cfg.mixer == "mamba" and cfg.attn_period and cfg.ssm_inner_norm and cfg.ffn == "swiglu"
                and cfg.norm == "rmsnorm" and cfg.positions == "none" and not cfg.bias and not cfg.qkv_bias)
    if not shape_ok:
        raise LlmarchError("model_type jamba needs mamba layers with ssm_inner_norm, attention every attn_period "
                           "layers with no positions, swiglu FFNs, rmsnorm and no biases")
    if cfg.n_experts and (cfg.router_renormalize or cfg.expert_hidden != cfg.ffn_hidden or cfg.n_shared_experts
                          or cfg.capacity_factor is not None or cfg.expert_capacity is not None):
        raise LlmarchError("model_type jamba's experts are ffn_hidden wide, with unrenormalised top-k weights and "
                           "no capacity or shared experts")
    moe = dict(num_experts=cfg.n_experts or 1, num_experts_per_tok=cfg.experts_per_token,
               expert_layer_period=cfg.moe_period, expert_layer_offset=cfg.moe_offset,
               router_aux_loss_coef=cfg.router_aux_loss_weight)
    return dict(architectures=["JambaForCausalLM"], model_type="jamba", vocab_size=cfg.vocab_size,
                hidden_size=cfg.d_model, intermediate_size=cfg.ffn_hidden, num_hidden_layers=cfg.n_layers,
                num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads, hidden_act="silu",
                rms_norm_eps=cfg.norm_eps, tie_word_embeddings=cfg.tie_embeddings,
                max_position_embeddings=cfg.context_length, attn_layer_period=cfg.attn_period,
                attn_layer_offset=cfg.attn_offset, mamba_d_state=cfg.ssm_state, mamba_d_conv=cfg.ssm_conv,
                mamba_expand=cfg.ssm_expand, mamba_dt_rank=cfg.ssm_dt_rank, mamba_conv_bias=cfg.ssm_conv_bias,
                mamba_proj_bias=cfg.ssm_bias, **moe, **({"eos_token_id": cfg.eos_id} if cfg.eos_id is not None else {}))


FAMILIES.register("jamba")(Family(RULES, to_config, from_config))
