"""Mixtral (`model_type: mixtral`): Mistral's layout with each FFN a mixture of SwiGLU experts
(`block_sparse_moe`: the router `gate`, and per expert w1 = gate, w3 = up, w2 = down, which we stack into
`experts.gate_up` (E, 2I, C) and `experts.down` (E, C, I)); top-k with renormalised weights."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf
from .mapping import Rule

_MOE = "model.layers.{i}.block_sparse_moe."
RULES = [r for r in LLAMA_RULES if ".mlp." not in r.ours] + [
    Rule.of(_MOE + "gate.weight", "blocks.{i}.mlp.router.weight"),
    Rule.of((_MOE + "experts.{e}.w1.weight", _MOE + "experts.{e}.w3.weight"), "blocks.{i}.mlp.experts.gate_up"),
    Rule.of(_MOE + "experts.{e}.w2.weight", "blocks.{i}.mlp.experts.down"),
]
# transformers 5's MixtralExperts (and Qwen3MoeExperts): w1 | w3 stacked as gate_up_proj (E, 2I, C), gate rows
# first as ours
STACKED = [Rule.of("model.layers.{i}.mlp.experts.gate_up_proj", "blocks.{i}.mlp.experts.gate_up"),
           Rule.of("model.layers.{i}.mlp.experts.down_proj", "blocks.{i}.mlp.experts.down")]


def moe_fields(hf: dict) -> dict:
    """Router settings shared by transformers' MoE families."""
    experts = hf.get("num_local_experts") or hf.get("num_experts")
    if not experts:
        raise LlmarchError(f"{hf['model_type']} config has no num_local_experts")
    return dict(n_experts=int(experts), experts_per_token=int(hf.get("num_experts_per_tok", 2)),
                router_aux_loss_weight=float(hf.get("router_aux_loss_coef", 0.0)),
                router_jitter=float(hf.get("router_jitter_noise", 0.0)))


def shared_fields(shared: int, width: int) -> dict:
    """A shared MLP of width `shared` beside experts of `width`: n_shared_experts expert-wide ones where it is a
    multiple, else one of its own width (shared_hidden)."""
    if not shared:
        return {}
    return dict(n_shared_experts=shared // width) if shared % width == 0 else dict(n_shared_experts=1,
                                                                                 shared_hidden=shared)


def moe_hf(cfg: ModelConfig) -> dict:
    return dict(num_local_experts=cfg.n_experts, num_experts_per_tok=cfg.experts_per_token,
                router_aux_loss_coef=cfg.router_aux_loss_weight, router_jitter_noise=cfg.router_jitter)


def check_exportable(cfg: ModelConfig, family: str) -> None:
    """What transformers' token-choice MoE families cannot express."""
    if cfg.capacity_factor is not None or cfg.expert_capacity is not None or cfg.n_shared_experts:
        raise LlmarchError(f"model_type {family} has no expert capacity or shared experts")
    if cfg.router_scoring != "softmax" or cfg.expert_bias or cfg.router_groups > 1 or cfg.router_scale != 1.0 \
            or cfg.moe_dense_first:
        raise LlmarchError(f"model_type {family} routes by softmax, without DeepSeek's expert bias, groups, "
                           "router_scale or dense first layers")


def to_config(hf: dict) -> ModelConfig:
    return llama_like_config(hf, sliding_window=hf.get("sliding_window"), **moe_fields(hf))


def from_config(cfg: ModelConfig) -> dict:
    check_exportable(cfg, "mixtral")
    if cfg.moe_period != 1 or not cfg.router_renormalize or cfg.expert_hidden != cfg.ffn_hidden:
        raise LlmarchError("model_type mixtral needs every FFN a mixture (moe_period 1) of experts of width "
                           "ffn_hidden with renormalised top-k weights")
    out = llama_like_hf(cfg, architectures=["MixtralForCausalLM"], sliding_window=cfg.sliding_window, **moe_hf(cfg))
    for key in ("attention_bias", "mlp_bias"):
        out.pop(key)
    return out


FAMILIES.register("mixtral")(Family(RULES, to_config, from_config, IGNORE, stacked_experts=STACKED))
