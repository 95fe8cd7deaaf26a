"""FlexOlmo (`model_type: flex_olmo`; Shi et al. 2025, "FlexOlmo: Open Language Models for Flexible Data Use"):
OLMo 2's block (olmo2.py: QK-norm over the whole query and key projections, an RMSNorm on each sublayer's output
before the residual add and none on its input) with OLMoE's mixture on every layer (olmoe.py: softmax router over
all experts, top-k, renormalised only with norm_topk_prob; experts of width intermediate_size). No clip_qkv."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, llama_like_config, llama_like_hf
from .mixtral import STACKED, check_exportable, moe_fields, moe_hf
from .olmo2 import RULES as OLMO2_RULES
from .qwen3_moe import RULES as QWEN3_MOE_RULES

RULES = [r for r in OLMO2_RULES if ".mlp." not in r.ours] + [r for r in QWEN3_MOE_RULES if ".mlp." in r.ours]
THETA = 500000.0  # FlexOlmoConfig.default_theta


def to_config(hf: dict) -> ModelConfig:
    if hf.get("attention_bias", False):
        raise LlmarchError("flex_olmo: attention_bias=true is not supported")
    return llama_like_config({"rope_theta": THETA, **hf, "mlp_bias": False}, qk_norm="proj",
                             norm_placement="res_post", expert_hidden=hf["intermediate_size"],
                             router_renormalize=bool(hf.get("norm_topk_prob", False)), **moe_fields(hf))


def from_config(cfg: ModelConfig) -> dict:
    check_exportable(cfg, "flex_olmo")
    if cfg.qk_norm != "proj" or cfg.norm != "rmsnorm" or cfg.norm_placement != "res_post" or not cfg.final_norm:
        raise LlmarchError("model_type flex_olmo needs qk_norm='proj' and RMSNorm after each sublayer (res_post)")
    if cfg.moe_period != 1 or cfg.expert_hidden != cfg.ffn_hidden:
        raise LlmarchError("model_type flex_olmo needs every FFN a mixture (moe_period 1) of experts of width "
                           "ffn_hidden")
    if cfg.sliding_window is not None or cfg.layer_types is not None or cfg.bias or cfg.qkv_bias \
            or cfg.clip_qkv is not None:
        raise LlmarchError("model_type flex_olmo has no biases, clip_qkv, sliding windows or layer types")
    out = llama_like_hf(cfg, architectures=["FlexOlmoForCausalLM"], norm_topk_prob=cfg.router_renormalize,
                        pad_token_id=None, **moe_hf(cfg))  # its default, 100277, lies past a smaller vocabulary
    for key in ("mlp_bias", "head_dim", "num_local_experts", "router_jitter_noise"):
        out.pop(key)
    out["num_experts"] = cfg.n_experts
    return out


FAMILIES.register("flex_olmo")(Family(RULES, to_config, from_config, IGNORE, stacked_experts=STACKED))
