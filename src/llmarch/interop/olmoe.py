"""OLMoE (`model_type: olmoe`; Muennighoff et al. 2024, "OLMoE: Open Mixture-of-Experts Language Models"):
LLaMA's pre-norm RMSNorm layout with QK-norm over the whole query and key projections (qk_norm 'proj', as OLMo 2),
q, k, v optionally clamped to +-clip_qkv after that norm, and every FFN a mixture of SwiGLU experts of width
intermediate_size: a softmax router over all experts, top-k, the weights renormalised only with norm_topk_prob
(OLMoE-1B-7B: 64 experts, 8 per token, not renormalised)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, llama_like_config, llama_like_hf
from .mixtral import STACKED, check_exportable, moe_fields, moe_hf
from .olmo import clip_field
from .qwen3_moe import RULES as QWEN3_MOE_RULES


def to_config(hf: dict) -> ModelConfig:
    if hf.get("attention_bias", False):
        raise LlmarchError("olmoe: attention_bias=true is not supported")
    return llama_like_config({**hf, "mlp_bias": False}, qk_norm="proj", norm_eps=hf.get("rms_norm_eps", 1e-5),
                             expert_hidden=hf["intermediate_size"],
                             router_renormalize=bool(hf.get("norm_topk_prob", False)), **moe_fields(hf),
                             **clip_field(hf))


def from_config(cfg: ModelConfig) -> dict:
    check_exportable(cfg, "olmoe")
    if cfg.qk_norm != "proj" or cfg.norm != "rmsnorm" or cfg.norm_placement != "pre" or not cfg.final_norm:
        raise LlmarchError("model_type olmoe needs qk_norm='proj' and pre-norm RMSNorm")
    if cfg.moe_period != 1 or cfg.expert_hidden != cfg.ffn_hidden:
        raise LlmarchError("model_type olmoe needs every FFN a mixture (moe_period 1) of experts of width ffn_hidden")
    if cfg.sliding_window is not None or cfg.layer_types is not None or cfg.bias or cfg.qkv_bias:
        raise LlmarchError("model_type olmoe has no biases, sliding windows or layer types")
    out = llama_like_hf(cfg, architectures=["OlmoeForCausalLM"], clip_qkv=cfg.clip_qkv,
                        norm_topk_prob=cfg.router_renormalize, **moe_hf(cfg))
    for key in ("mlp_bias", "head_dim", "num_local_experts", "router_jitter_noise"):
        out.pop(key)
    out["num_experts"] = cfg.n_experts
    return out


FAMILIES.register("olmoe")(Family(QWEN3_MOE_RULES, to_config, from_config, IGNORE, stacked_experts=STACKED))
