"""A.X-K1 (`model_type: axk1`; SK Telecom 2026; transformers' AXK1ForCausalLM): DeepSeek-V3 (deepseek_v3.py: latent
attention with a compressed query and interleaved RoPE rows, the sigmoid router with groups, shared experts) with one
change: each mixture's output, routed plus shared experts, passes an RMSNorm before the residual add
(`post_mlp_layernorm`, stored at the layer's level: moe_out_norm; the published checkpoints store one for the dense
layers too, which transformers does not use, nor llmarch). Mixtures sit where `mlp_layer_types` says `sparse`
(from first_k_dense_replace and moe_layer_freq in older configs: i >= k and i % freq == 0), which must be every
period-th layer after the first dense ones (moe_period, moe_offset, moe_dense_first). The published checkpoints
route without `e_score_correction_bias`: a checkpoint without it reads it as zeros, as transformers does."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from . import deepseek_v3
from .deepseek_v2 import IGNORE, deepseek_hf, rules
from .hf import FAMILIES, Family
from .mapping import Rule

RULES = rules(interleaved=True) + [Rule.of("model.layers.{i}.post_mlp_layernorm.weight",
                                           "blocks.{i}.mlp.out_norm.weight")]
# AXK1Config's defaults (A.X-K1's), DeepseekV3Config's where it keeps them
_DEFAULTS = dict(kv_lora_rank=512, q_lora_rank=1536, qk_rope_head_dim=64, qk_nope_head_dim=128, v_head_dim=128,
                 n_group=8, topk_group=4, num_experts_per_tok=8, n_routed_experts=192, n_shared_experts=1,
                 routed_scaling_factor=2.5, moe_intermediate_size=2048, max_position_embeddings=32768,
                 rms_norm_eps=1e-6, norm_topk_prob=True)


def _placement(hf: dict) -> dict:
    """mlp_layer_types (or first_k_dense_replace and moe_layer_freq) as moe_dense_first, moe_period, moe_offset."""
    n = hf["num_hidden_layers"]
    k, freq = int(hf.get("first_k_dense_replace", 1)), int(hf.get("moe_layer_freq", 1))
    types = hf.get("mlp_layer_types") or ["sparse" if i >= k and i % freq == 0 else "dense" for i in range(n)]
    sparse = [i for i, t in enumerate(types) if t == "sparse"]
    if not sparse:
        return dict(n_experts=0)
    period = sparse[1] - sparse[0] if len(sparse) > 1 else 1
    fields = dict(moe_dense_first=sparse[0], moe_period=period, moe_offset=sparse[0] % period)
    if types != ["sparse" if i >= sparse[0] and i % period == sparse[0] % period else "dense" for i in range(n)]:
        raise LlmarchError(f"axk1: mlp_layer_types {types} are not every k-th layer after the first dense ones")
    return fields


def to_config(hf: dict) -> ModelConfig:
    hf = {**_DEFAULTS, **hf}
    if hf.get("rope_interleave") is False:
        raise LlmarchError("axk1 with rope_interleave false is not supported")
    if hf.get("q_lora_rank") is None:
        raise LlmarchError("axk1 always compresses the query: q_lora_rank null is not supported")
    place = _placement(hf)
    cfg = deepseek_v3.to_config({**hf, "n_routed_experts": 0} if place.get("n_experts") == 0 else hf)
    return cfg.replace(**place, moe_out_norm=True) if cfg.n_experts else cfg


def from_config(cfg: ModelConfig) -> dict:
    if cfg.n_experts and not cfg.moe_out_norm or cfg.q_lora_rank is None:
        raise LlmarchError("model_type axk1 needs a norm on each mixture's output (moe_out_norm) and a compressed "
                           "query (q_lora_rank)")
    if cfg.n_experts and (cfg.router_scoring != "sigmoid" or not cfg.expert_bias):
        raise LlmarchError("model_type axk1 routes by sigmoid scores with an expert bias")
    # the mixture's keys as DeepSeek-V3 writes them, its placement as mlp_layer_types
    out = deepseek_hf(cfg.replace(moe_period=1, moe_offset=0, moe_dense_first=0) if cfg.n_experts else cfg,
                      architectures=["AXK1ForCausalLM"], norm_topk_prob=cfg.router_renormalize, rope_interleave=True,
                      mlp_layer_types=["sparse" if cfg.is_moe_layer(i) else "dense" for i in range(cfg.n_layers)])
    out.pop("first_k_dense_replace")
    return out


FAMILIES.register("axk1")(Family(RULES, to_config, from_config, IGNORE + (r"\.post_mlp_layernorm\.weight$",),
                                 zero_if_absent=(r"mlp\.gate\.e_score_correction_bias$",)))
