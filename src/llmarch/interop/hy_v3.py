"""HY V3 (`model_type: hy_v3`; Tencent 2026, Hy3-preview): LLaMA's pre-norm blocks with Apertus's attention (a
per-head RMSNorm on q and k before RoPE, qk_norm 'head'), dense SwiGLU layers where `mlp_layer_types` says `dense`
(by default the first), and elsewhere AFMoE's mixture (afmoe.py: sigmoid scores plus an expert bias for the choice,
no groups, the chosen scores renormalised and times router_scaling_factor, shared experts of moe_intermediate_size x
num_shared_experts) under the checkpoint's names `mlp.router.gate`, `mlp.expert_bias`, `mlp.shared_mlp`. Its
enable_moe_fp32_combine adds the shared and routed outputs in fp32, which is what an fp32 model does anyway."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .afmoe import sigmoid_moe_fields, sigmoid_moe_hf
from .deepseek_v2 import dense_first, first_dense, moe_rules
from .hf import FAMILIES, Family
from .llama import IGNORE, llama_like_config, llama_like_hf
from .mixtral import STACKED
from .qwen3 import RULES as QWEN3_RULES

RULES = QWEN3_RULES + moe_rules("expert_bias", router="router.gate.weight", shared="shared_mlp")
THETA = 11_158_840.0  # HYV3Config.default_theta
# HYV3Config's defaults for what a config.json may leave out
DEFAULTS = dict(rope_theta=THETA, rms_norm_eps=1e-5, head_dim=128, num_experts=192, num_experts_per_tok=8,
                num_shared_experts=1, moe_intermediate_size=1536, router_scaling_factor=2.826)


def to_config(hf: dict) -> ModelConfig:
    hf = {**DEFAULTS, **hf}
    if hf.get("attention_bias") or hf.get("mlp_bias"):
        raise LlmarchError("hy_v3: attention_bias or mlp_bias is not supported")
    n = hf["num_hidden_layers"]
    types = hf.get("mlp_layer_types") or ["dense"] * min(n, 1) + ["sparse"] * max(n - 1, 0)
    moe = sigmoid_moe_fields(hf, float(hf["router_scaling_factor"]),
                             dense_first({**hf, "mlp_layer_types": types}))
    return llama_like_config(hf, qk_norm="head",
                             **moe)


def from_config(cfg: ModelConfig) -> dict:
    if cfg.qk_norm != "head" or cfg.bias or cfg.qkv_bias or cfg.norm != "rmsnorm" or cfg.ffn != "swiglu" \
            or cfg.norm_placement != "pre" or cfg.sliding_window is not None or cfg.layer_types is not None:
        raise LlmarchError("model_type hy_v3 needs qk_norm='head', pre-norm RMSNorm, SwiGLU, no biases, windows or "
                           "layer types")
    k = first_dense(cfg) if cfg.n_experts else cfg.n_layers
    out = llama_like_hf(cfg, architectures=["HYV3ForCausalLM"], router_scaling_factor=cfg.router_scale,
                        mlp_layer_types=["dense"] * k + ["sparse"] * (cfg.n_layers - k), **sigmoid_moe_hf(cfg))
    return out


FAMILIES.register("hy_v3")(Family(RULES, to_config, from_config, IGNORE, stacked_experts=STACKED))
