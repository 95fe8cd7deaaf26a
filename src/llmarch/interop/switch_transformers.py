"""Switch Transformers (`model_type: switch_transformers`; Fedus et al. 2022): T5 v1.0 whose FFN is, on
layers where i % sparse_step == 1 (every layer when the step is 1), a top-1 mixture of T5 FFNs: the router
`mlp.router.classifier` (fp32), experts `mlp.experts.expert_{e}.wi|wo` weighted by their raw router
probability, at most `expert_capacity` tokens per expert per sequence, the rest dropped in order."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from . import t5
from .hf import FAMILIES, Family
from .mapping import Rule


def _expert_rules(part: str) -> list[Rule]:
    hf, ours = f"{part}.block.{{i}}.layer.{t5.ffn_layer(part)}.mlp.", f"{part}.blocks.{{i}}.mlp."
    return [Rule.of(hf + "router.classifier.weight", ours + "router.weight"),
            Rule.of(hf + "experts.expert_{e}.wi.weight", ours + "experts.up"),
            Rule.of(hf + "experts.expert_{e}.wo.weight", ours + "experts.down")]


RULES = [Rule.of("shared.weight", "embed.weight"), Rule.of("lm_head.weight", "lm_head.weight")] + [
    rule for part in ("encoder", "decoder") for rule in t5.stack_rules(part, mlp="mlp") + _expert_rules(part)]


def _step(hf: dict, part: str) -> int:
    """transformers' sparse step: stored, or num_layers // num_sparse_layers (its configuration's rule)."""
    layers = hf["num_layers"] if part == "encoder" else hf.get("num_decoder_layers") or hf["num_layers"]
    if f"{part}_sparse_step" in hf:
        return int(hf[f"{part}_sparse_step"])
    sparse = hf.get(f"num_sparse_{part}_layers", 3)
    return layers // sparse if sparse > 0 else 0


def to_config(hf: dict) -> ModelConfig:
    steps = {_step(hf, part) for part in ("encoder", "decoder")}
    if len(steps) > 1:
        raise LlmarchError("Switch Transformers with different encoder and decoder sparse steps is not supported")
    step = steps.pop()
    if step <= 0:
        raise LlmarchError("this Switch Transformers config has no sparse layers; load it as a T5 model instead")
    if hf.get("router_bias"):
        raise LlmarchError("Switch Transformers with router_bias is not supported")
    cfg = t5.to_config({**hf, "feed_forward_proj": hf.get("dense_act_fn", "relu")})
    return cfg.replace(name=hf.get("_name_or_path") or "switch_transformers", hf_model_type="switch_transformers",
                       n_experts=hf["num_experts"], experts_per_token=1, router_renormalize=False,
                       moe_period=step, moe_offset=1 if step > 1 else 0, expert_capacity=hf.get("expert_capacity", 64),
                       router_jitter=float(hf.get("router_jitter_noise", 0.0)),
                       router_aux_loss_weight=float(hf.get("router_aux_loss_coef", 0.0)),
                       router_z_loss_weight=float(hf.get("router_z_loss_coef", 0.0)), router_aux_scope="sequence")


def from_config(cfg: ModelConfig) -> dict:
    out = t5.from_config(cfg)
    act = out.pop("feed_forward_proj")
    out.pop("scale_decoder_outputs")
    if act.startswith("gated") or cfg.head_scale != cfg.tie_embeddings:
        raise LlmarchError("model_type switch_transformers needs a non-gated FFN and the T5 v1.0 head (tied and "
                           "scaled, or untied and unscaled)")
    if cfg.experts_per_token != 1 or cfg.router_renormalize or cfg.n_shared_experts:
        raise LlmarchError("model_type switch_transformers routes top-1 by the raw router probability "
                           "(experts_per_token 1, router_renormalize false, no shared experts)")
    if cfg.capacity_factor is not None:
        raise LlmarchError("model_type switch_transformers stores a fixed expert_capacity, not a capacity_factor; "
                           "set expert_capacity")
    if cfg.moe_offset != (1 if cfg.moe_period > 1 else 0):
        raise LlmarchError("model_type switch_transformers puts experts on layers where i % step == 1 "
                           "(moe_offset 1, or 0 with moe_period 1)")
    sparse = {}
    for part, layers in (("encoder", cfg.n_layers), ("decoder", cfg.n_decoder_layers)):
        count = sum(cfg.is_moe_layer(i) for i in range(layers))
        if count == 0 or layers // count != cfg.moe_period:
            raise LlmarchError(f"transformers derives the sparse step as layers // sparse layers; {layers} {part} "
                               f"layers with moe_period {cfg.moe_period} do not round-trip")
        sparse.update({f"num_sparse_{part}_layers": count, f"{part}_sparse_step": cfg.moe_period})
    out.update(model_type="switch_transformers", architectures=["SwitchTransformersForConditionalGeneration"],
               dense_act_fn=act, num_experts=cfg.n_experts, router_bias=False, router_dtype="float32",
               expert_capacity=cfg.expert_capacity or cfg.context_length,  # None: unlimited, a sequence at most
               router_jitter_noise=cfg.router_jitter, router_aux_loss_coef=cfg.router_aux_loss_weight,
               router_z_loss_coef=cfg.router_z_loss_weight, **sparse)
    return out


FAMILIES.register("switch_transformers")(Family(RULES, to_config, from_config, t5.IGNORE))
