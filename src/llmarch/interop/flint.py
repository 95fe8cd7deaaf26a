"""Flint (`model_type: flint`; RecursiveSI 2026; transformers' FlintForCausalLM): a decoder of parts llmarch has:
- Qwen3's attention (GQA, a per-head RMSNorm on q and k: qk_norm 'head') with a learned sink logit per head, stored
  as `self_attn.softmax_offset` (attn_sinks, layers/sinks.py: one more softmax logit attending to nothing, as
  gpt-oss's);
- layer types as Command R7B's: `sliding_attention` layers slide over sliding_window keys with RoPE,
  `full_attention` layers see every key without positions (by default the first two, every i % 4 == 1 and the
  last);
- Qwen2-MoE's placement of mixtures (dense SwiGLUs of intermediate_size on `mlp_only_layers`, which must be the
  first k, and off `decoder_sparse_step`), each routing by sigmoid scores with no expert bias, the top k
  renormalised (norm_topk_prob), plus an ungated shared SwiGLU expert of shared_expert_intermediate_size."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, llama_like_config, llama_like_hf
from .mapping import Rule
from .mixtral import STACKED, shared_fields
from .qwen2_moe import RULES as QWEN2_MOE_RULES
from .qwen3 import nope_window_fields, nope_window_hf

_A = "model.layers.{i}.self_attn."
RULES = [r for r in QWEN2_MOE_RULES if "shared_gate" not in r.ours] + [
    *[Rule.of(_A + f"{n}_norm.weight", f"blocks.{{i}}.attn.{n}_norm.weight") for n in "qk"],
    Rule.of(_A + "softmax_offset", "blocks.{i}.attn.sinks"),
]
# FlintConfig's defaults for what a config.json may leave out
DEFAULTS = dict(num_key_value_heads=4, head_dim=128, rms_norm_eps=1e-6, sliding_window=513, moe_intermediate_size=512,
                shared_expert_intermediate_size=1024, num_experts_per_tok=6, num_experts=256, norm_topk_prob=True,
                decoder_sparse_step=1, max_position_embeddings=262144, mlp_only_layers=[0, 1])


def _moe(hf: dict) -> dict:
    experts, width = int(hf["num_experts"] or 0), int(hf["moe_intermediate_size"])
    if not experts:
        return {}
    dense, step = sorted(hf["mlp_only_layers"]), int(hf["decoder_sparse_step"])
    if dense != list(range(len(dense))):
        raise LlmarchError(f"flint: mlp_only_layers={dense} is not supported (llmarch's dense layers are the first k "
                           "and those off decoder_sparse_step)")
    shared = int(hf["shared_expert_intermediate_size"] or 0)
    return dict(n_experts=experts, experts_per_token=int(hf["num_experts_per_tok"]), expert_hidden=width,
                moe_period=step, moe_offset=step - 1, moe_dense_first=len(dense), router_scoring="sigmoid",
                router_renormalize=bool(hf["norm_topk_prob"]), **shared_fields(shared, width),
                router_aux_loss_weight=float(hf.get("router_aux_loss_coef", 0.0)))


def to_config(hf: dict) -> ModelConfig:
    hf = {**DEFAULTS, **hf}
    if hf.get("attention_bias"):
        raise LlmarchError("flint: attention_bias is not supported")
    if hf["sliding_window"] is None:
        raise LlmarchError("flint: sliding_window null is not supported (its full layers have no positions)")
    n = hf["num_hidden_layers"]
    types = hf.get("layer_types") or ["full_attention" if i < 2 or i % 4 == 1 or i == n - 1 else "sliding_attention"
                                      for i in range(n)]
    return llama_like_config(hf, qk_norm="head", attn_sinks=True, **nope_window_fields({**hf, "layer_types": types}),
                             **_moe(hf))


def from_config(cfg: ModelConfig) -> dict:
    if cfg.qk_norm != "head" or not cfg.attn_sinks or cfg.bias or cfg.qkv_bias or cfg.norm != "rmsnorm" \
            or cfg.ffn != "swiglu" or cfg.norm_placement != "pre":
        raise LlmarchError("model_type flint needs qk_norm='head', attn_sinks, pre-norm RMSNorm, SwiGLU and no biases")
    moe = dict(num_experts=0, mlp_only_layers=[])
    if cfg.n_experts:
        if (cfg.moe_offset != cfg.moe_period - 1 or cfg.router_scoring != "sigmoid" or cfg.expert_bias
                or cfg.router_bias or cfg.router_groups > 1 or cfg.router_scale != 1.0 or not cfg.n_shared_experts
                or cfg.shared_expert_gate or cfg.capacity_factor is not None or cfg.expert_capacity is not None):
            raise LlmarchError("model_type flint's experts sit where (i + 1) % moe_period == 0, routed by sigmoid "
                               "scores without a bias, groups, scale or capacity, beside an ungated shared expert")
        moe = dict(num_experts=cfg.n_experts, num_experts_per_tok=cfg.experts_per_token,
                   moe_intermediate_size=cfg.expert_hidden, shared_expert_intermediate_size=cfg.shared_hidden,
                   decoder_sparse_step=cfg.moe_period, mlp_only_layers=list(range(cfg.moe_dense_first)),
                   norm_topk_prob=cfg.router_renormalize, router_aux_loss_coef=cfg.router_aux_loss_weight)
    out = llama_like_hf(cfg, architectures=["FlintForCausalLM"], **nope_window_hf(cfg), **moe)
    out.pop("mlp_bias")
    return out


FAMILIES.register("flint")(Family(RULES, to_config, from_config, IGNORE, stacked_experts=STACKED))
