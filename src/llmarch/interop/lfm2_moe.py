"""LFM2-MoE (`model_type: lfm2_moe`: LFM2-8B-A1B; Liquid AI 2025): LFM2's hybrid of gated short convolutions and
attention (interop/lfm2.py) whose FFNs after the first num_dense_layers (SwiGLU of intermediate_size, as given:
no 2/3 adjustment) are mixtures of SwiGLU experts of moe_intermediate_size: sigmoid scores, an expert bias for the
choice (use_expert_bias), the chosen scores renormalised (norm_topk_prob; transformers adds 1e-6 to the sum) and
times routed_scaling_factor, as DeepSeek-V3 routes without groups."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .lfm2 import RULES as LFM2_RULES, lfm2_hf, to_config as lfm2_config
from .llama import IGNORE
from .mapping import Rule

_F = "model.layers.{i}.feed_forward."
RULES = LFM2_RULES + [
    Rule.of(_F + "gate.weight", "blocks.{i}.mlp.router.weight"),
    Rule.of(_F + "expert_bias", "blocks.{i}.mlp.router.expert_bias"),
    Rule.of((_F + "experts.{e}.w1.weight", _F + "experts.{e}.w3.weight"), "blocks.{i}.mlp.experts.gate_up"),
    Rule.of(_F + "experts.{e}.w2.weight", "blocks.{i}.mlp.experts.down"),
]
# transformers 5's Lfm2MoeExperts: w1 | w3 stacked as gate_up_proj (E, 2I, C), as ours
STACKED = [Rule.of(_F + "experts.gate_up_proj", "blocks.{i}.mlp.experts.gate_up"),
           Rule.of(_F + "experts.down_proj", "blocks.{i}.mlp.experts.down")]


def to_config(hf: dict) -> ModelConfig:
    return lfm2_config({**hf, "block_auto_adjust_ff_dim": False}).replace(
        n_experts=int(hf["num_experts"]), experts_per_token=int(hf["num_experts_per_tok"]),
        expert_hidden=int(hf["moe_intermediate_size"]), moe_dense_first=int(hf.get("num_dense_layers", 0)),
        router_scoring="sigmoid", expert_bias=bool(hf.get("use_expert_bias", True)),
        router_renormalize=bool(hf.get("norm_topk_prob", True)),
        router_scale=float(hf.get("routed_scaling_factor", 1.0)))


def from_config(cfg: ModelConfig) -> dict:
    if not cfg.n_experts or cfg.router_scoring != "sigmoid" or cfg.moe_period != 1 or cfg.n_shared_experts \
            or cfg.router_groups > 1 or cfg.capacity_factor is not None or cfg.expert_capacity is not None:
        raise LlmarchError("model_type lfm2_moe routes by sigmoid scores (router_scoring 'sigmoid') to uncapped "
                           "experts after the first dense layers, without groups or shared experts")
    out = lfm2_hf(cfg, "Lfm2MoeForCausalLM")
    out.update(num_experts=cfg.n_experts, num_experts_per_tok=cfg.experts_per_token,
               moe_intermediate_size=cfg.expert_hidden, num_dense_layers=cfg.moe_dense_first,
               use_expert_bias=cfg.expert_bias, norm_topk_prob=cfg.router_renormalize,
               routed_scaling_factor=cfg.router_scale)
    out.pop("block_auto_adjust_ff_dim")
    return out


FAMILIES.register("lfm2_moe")(Family(RULES, to_config, from_config, IGNORE, stacked_experts=STACKED))
