"""MiniMax-M2 (`model_type: minimax_m2`; MiniMax 2025, MiniMax-M2 and M2.1, 230B with 10B active): grouped-query
attention with an RMSNorm over the whole query and key projections (qk_norm 'proj', as OLMo 2) and RoPE on the
first rotary_dim dims of each head (LLaMA's halves), and every FFN Mixtral's mixture of SwiGLU experts routed as
DeepSeek-V3 routes (§2.1.2), without groups or scale: sigmoid scores, an expert bias (e_score_correction_bias) that
moves only the choice, the chosen scores renormalised."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, llama_like_config, llama_like_hf, rope_fraction, rope_parameters
from .mapping import Rule
from .mixtral import RULES as MIXTRAL_RULES, STACKED, moe_fields, moe_hf
from .qwen3 import RULES as QWEN3_RULES

RULES = [r for r in QWEN3_RULES if ".mlp." not in r.ours] + [r for r in MIXTRAL_RULES if ".mlp." in r.ours] + [
    Rule.of("model.layers.{i}.block_sparse_moe.e_score_correction_bias", "blocks.{i}.mlp.router.expert_bias")]
ROUTER = dict(router_scoring="sigmoid", expert_bias=True, router_renormalize=True)


def to_config(hf: dict) -> ModelConfig:
    if hf.get("attention_bias") or hf.get("use_qk_norm") is False:
        raise LlmarchError("minimax_m2: attention biases or no QK-norm are not supported")
    head_dim = hf.get("head_dim") or hf["hidden_size"] // hf["num_attention_heads"]
    # released checkpoints give the rotated width as rotary_dim; transformers reads it as the factor
    fraction = rope_fraction(hf, hf["rotary_dim"] / head_dim if hf.get("rotary_dim") else 1.0)
    return llama_like_config({**hf, "mlp_bias": False}, qk_norm="proj", rope_fraction=fraction,
                             norm_eps=hf.get("rms_norm_eps", 1e-6), expert_hidden=hf["intermediate_size"],
                             **moe_fields(hf), **ROUTER)


def from_config(cfg: ModelConfig) -> dict:
    router = dict(router_scoring=cfg.router_scoring, expert_bias=cfg.expert_bias,
                  router_renormalize=cfg.router_renormalize)
    if router != ROUTER or cfg.moe_period != 1 or cfg.expert_hidden != cfg.ffn_hidden or cfg.n_shared_experts \
            or cfg.router_groups > 1 or cfg.router_scale != 1.0 or cfg.moe_dense_first \
            or cfg.capacity_factor is not None or cfg.expert_capacity is not None:
        raise LlmarchError("model_type minimax_m2 needs every FFN a mixture of uncapped experts of width ffn_hidden, "
                           "routed by sigmoid scores with an expert bias, renormalised, without groups, scale or "
                           "shared experts")
    if cfg.qk_norm != "proj" or cfg.norm != "rmsnorm" or cfg.norm_placement != "pre" or cfg.bias or cfg.qkv_bias \
            or cfg.sliding_window is not None or cfg.layer_types is not None:
        raise LlmarchError("model_type minimax_m2 needs qk_norm='proj', pre-norm RMSNorm, no biases, windows or "
                           "layer types")
    out = llama_like_hf(cfg, architectures=["MiniMaxM2ForCausalLM"],
                        rope_parameters=rope_parameters(cfg, partial=True), **moe_hf(cfg))
    for key in ("attention_bias", "mlp_bias"):
        out.pop(key)
    return out


FAMILIES.register("minimax_m2")(Family(RULES, to_config, from_config, IGNORE, stacked_experts=STACKED + [
    Rule.of("model.layers.{i}.mlp.e_score_correction_bias", "blocks.{i}.mlp.router.expert_bias")]))
