"""Mistral Small 4 (`model_type: mistral4`; Mistral AI 2026, Mistral-Small-4-119B): DeepSeek-V3's layout
(deepseek_v2.py: multi-head latent attention with YaRN on interleaved RoPE dims, dense first layers, shared experts)
with a softmax router whose chosen scores are renormalised (norm_topk_prob) and times routed_scaling_factor, and
Ministral 3's log-length query scaling, 1 + llama_4_scaling_beta ln(1 + floor(p / original_max_position_embeddings)),
on every layer (attn_temp_*; ministral3.py). Groups (n_group > 1) are refused: its router scores a group by its
two best softmax scores, which llmarch's softmax routing (DeepSeek-V2's, by the best one) does not."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .deepseek_v2 import IGNORE, deepseek_config, deepseek_hf, rules
from .hf import FAMILIES, Family
from .ministral3 import query_scaling, query_scaling_hf
from .mixtral import STACKED


def to_config(hf: dict) -> ModelConfig:
    if int(hf.get("n_group") or 1) > 1:
        raise LlmarchError("mistral4: n_group > 1 (groups scored by their two best softmax scores) is not supported")
    if hf.get("rope_interleave") is False:
        raise LlmarchError("mistral4 with rope_interleave false is not supported")
    params = dict(hf.get("rope_parameters") or {})
    params.pop("partial_rotary_factor", None)  # the rotated qk_rope_head_dim of each head, which MLA has apart
    cfg = deepseek_config({**hf, "rope_parameters": params}, router_scoring="softmax",
                          router_renormalize=bool(hf.get("norm_topk_prob", True)))
    scaling = query_scaling(hf, params)
    return cfg.replace(**scaling) if scaling else cfg


def from_config(cfg: ModelConfig) -> dict:
    if cfg.n_experts and (cfg.router_scoring != "softmax" or cfg.expert_bias or cfg.router_groups > 1):
        raise LlmarchError("model_type mistral4 routes by softmax scores, without an expert bias or groups")
    out = deepseek_hf(cfg, architectures=["Mistral4ForCausalLM"], norm_topk_prob=cfg.router_renormalize,
                      rope_interleave=True)
    params = out["rope_parameters"]
    params["partial_rotary_factor"] = cfg.head_dim / (cfg.head_dim + cfg.qk_nope_head_dim)
    query_scaling_hf(cfg, params)
    return out


# transformers 5 writes this family's experts stacked as it holds them (gate_up_proj, down_proj), having no older
# per-expert names to convert them back to
RULES = [r for r in rules(interleaved=True) if ".experts.{e}." not in r.hf[0]] + STACKED
FAMILIES.register("mistral4")(Family(RULES, to_config, from_config, IGNORE, stacked_experts=STACKED))
