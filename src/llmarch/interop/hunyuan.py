"""Hunyuan dense (`model_type: hunyuan_v1_dense`: Hunyuan-0.5B to 7B; Tencent 2025): LLaMA's layout with a
per-head RMSNorm on queries and keys after RoPE rather than before it (qk_norm 'head_after_rope':
`query_layernorm`, `key_layernorm`). Its RoPE type "dynamic" with an `alpha` is not dynamic NTK: a fixed alpha
only stretches the base, theta * alpha ** (d / (d - 2)) (transformers' ntk_alpha), which llmarch reads as that
base and writes back as plain RoPE.

Hunyuan's mixtures (`hunyuan_v1_moe`: Hunyuan-A13B) put on every layer experts of intermediate_size chosen by a
softmax router (`mlp.gate.wg`), top-k (moe_topk) renormalised, and add an ungated shared MLP of the same width
(`mlp.shared_mlp`)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf
from .mapping import Rule
from .mixtral import STACKED, check_exportable

_A = "model.layers.{i}.self_attn."
RULES = LLAMA_RULES + [Rule.of(_A + "query_layernorm.weight", "blocks.{i}.attn.q_norm.weight"),
                       Rule.of(_A + "key_layernorm.weight", "blocks.{i}.attn.k_norm.weight")]


def _rope(hf: dict) -> dict:
    """rope_parameters with a fixed alpha folded into the base."""
    params = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    alpha = params.get("alpha")
    if alpha is None:
        return hf
    d = hf.get("head_dim") or hf["hidden_size"] // hf["num_attention_heads"]
    theta = params.get("rope_theta", hf.get("rope_theta", 10000.0)) * float(alpha) ** (d / (d - 2))
    rest = {k: v for k, v in hf.items() if k not in ("rope_parameters", "rope_scaling", "rope_theta")}
    return {**rest, "rope_parameters": {"rope_type": "default", "rope_theta": theta}}


def to_config(hf: dict) -> ModelConfig:
    return llama_like_config(_rope(hf), qk_norm="head_after_rope", norm_eps=hf.get("rms_norm_eps", 1e-5))


def from_config(cfg: ModelConfig) -> dict:
    if cfg.qk_norm != "head_after_rope" or cfg.norm != "rmsnorm" or cfg.norm_placement != "pre" \
            or cfg.sliding_window is not None or cfg.layer_types is not None:
        raise LlmarchError("model_type hunyuan_v1_dense needs qk_norm='head_after_rope', pre-norm RMSNorm and no "
                           "windows or layer types")
    return llama_like_hf(cfg, architectures=["HunYuanDenseV1ForCausalLM"])


FAMILIES.register("hunyuan_v1_dense")(Family(RULES, to_config, from_config, IGNORE))


_M, _B = "model.layers.{i}.mlp.", "blocks.{i}."
MOE_RULES = [r for r in RULES if ".mlp." not in r.ours] + [
    Rule.of(_M + "gate.wg.weight", _B + "mlp.router.weight"),
    Rule.of((_M + "experts.{e}.gate_proj.weight", _M + "experts.{e}.up_proj.weight"), _B + "mlp.experts.gate_up"),
    Rule.of(_M + "experts.{e}.down_proj.weight", _B + "mlp.experts.down"),
    Rule.of((_M + "shared_mlp.gate_proj.weight", _M + "shared_mlp.up_proj.weight"), _B + "mlp.shared.gate_up.weight"),
    Rule.of(_M + "shared_mlp.down_proj.weight", _B + "mlp.shared.down.weight"),
]


def moe_config(hf: dict) -> ModelConfig:
    topk = hf.get("moe_topk", 1)
    if isinstance(topk, list):
        if len(set(topk)) != 1:
            raise LlmarchError(f"hunyuan_v1_moe: a different top-k per layer ({topk}) is not supported")
        topk = topk[0]
    return to_config(hf).replace(hf_model_type="hunyuan_v1_moe", n_experts=int(hf["num_experts"]),
                                 experts_per_token=int(topk), expert_hidden=int(hf["intermediate_size"]),
                                 n_shared_experts=1, router_renormalize=True)


def moe_hf(cfg: ModelConfig) -> dict:
    check_exportable(cfg.replace(n_shared_experts=0), "hunyuan_v1_moe")
    if cfg.moe_period != 1 or not cfg.router_renormalize or cfg.n_shared_experts != 1 \
            or cfg.shared_hidden != cfg.ffn_hidden or cfg.expert_hidden != cfg.ffn_hidden or cfg.shared_expert_gate:
        raise LlmarchError("model_type hunyuan_v1_moe needs experts on every layer with renormalised top-k weights, "
                           "all of ffn_hidden's width, and one ungated shared MLP of that width")
    out = from_config(cfg.replace(hf_model_type="hunyuan_v1_dense", n_experts=0, n_shared_experts=0))
    return {**out, "model_type": "hunyuan_v1_moe", "architectures": ["HunYuanMoEV1ForCausalLM"],
            "num_experts": cfg.n_experts, "moe_topk": cfg.experts_per_token}


FAMILIES.register("hunyuan_v1_moe")(Family(MOE_RULES, moe_config, moe_hf, IGNORE, stacked_experts=STACKED))
