"""DeepSeek-V3.2 (`model_type: deepseek_v32`; DeepSeek-AI 2025, arXiv 2512.02556): DeepSeek-V3's layout
(deepseek_v3.py: latent attention with compressed queries and interleaved RoPE, V3's router, shared experts, the
dense first layers of mlp_layer_types or first_k_dense_replace, default 3) with DeepSeek Sparse Attention in every
layer: a lightning indexer (`self_attn.indexer.*`: wq_b from the compressed query, wk with its LayerNorm k_norm,
weights_proj; layers/dsa.py) picks the index_topk keys each query attends to. The indexer rotates the first
qk_rope_head_dim dims of its q and k in halves (transformers' apply_rotary_pos_emb, not the interleaved pairs of
the attention), as ours does, so its tensors load as stored. This module also holds what GLM-5's `glm_moe_dsa`
(glm_moe_dsa.py) shares. Multi-token-prediction layers past the last are not loaded."""
from __future__ import annotations

import torch

from ..config import ModelConfig
from ..errors import LlmarchError
from .deepseek_v2 import IGNORE, _interleaved, deepseek_config, deepseek_hf, dense_first, rules, v3_router_fields
from .hf import FAMILIES, Family
from .mapping import LAYOUTS, Rule

_I = "model.layers.{i}.self_attn.indexer."
_O = "blocks.{i}.attn.indexer."


def _index_rows(t: torch.Tensor, cfg, to_ours: bool) -> torch.Tensor:
    """Indexer rows (heads x dsa_head_dim, ...; k_proj and k_norm: one head) whose first head_dim dims turn in
    interleaved pairs (GLM-5), reordered per head to our halves (or back); q and k move alike, so q.k holds."""
    D, R = cfg.dsa_head_dim, cfg.head_dim
    order = torch.cat((_interleaved(R, to_ours), torch.arange(R, D)))
    return t.reshape(-1, D, *t.shape[1:])[:, order].reshape(t.shape)


LAYOUTS["dsa_pairs"] = (lambda t, cfg: _index_rows(t, cfg, True), lambda t, cfg: _index_rows(t, cfg, False),
                        lambda s: s)


def dsa_rules(rope: str) -> list[Rule]:
    """The latent attention and mixture of DeepSeek-V3 with the lightning indexer, its RoPE rows laid out `rope`."""
    return rules(interleaved=True) + [
        Rule.of(_I + "wq_b.weight", _O + "q_proj.weight", rope),
        Rule.of(_I + "wk.weight", _O + "k_proj.weight", rope),
        Rule.of(_I + "k_norm.weight", _O + "k_norm.weight", rope),
        Rule.of(_I + "k_norm.bias", _O + "k_norm.bias", rope),
        Rule.of(_I + "weights_proj.weight", _O + "weights_proj.weight"),
    ]


def dsa_config(hf: dict, heads: int, **extra) -> ModelConfig:
    """V3's config with the indexer's fields (`heads`: the config class's default index_n_heads)."""
    kind = hf["model_type"]
    if hf.get("q_lora_rank") is None:
        raise LlmarchError(f"{kind} without q_lora_rank is not supported (the indexer reads the compressed query)")
    if set(hf.get("layer_types") or ["indexed_attention"]) != {"indexed_attention"}:
        raise LlmarchError(f"{kind}: layer_types {hf['layer_types']} other than indexed_attention are not supported")
    fields = dict(dsa_topk=int(hf.get("index_topk", 2048)), dsa_heads=int(hf.get("index_n_heads", heads)),
                  dsa_head_dim=int(hf.get("index_head_dim", 128)), **extra)
    return deepseek_config({**hf, "first_k_dense_replace": dense_first({"first_k_dense_replace": 3, **hf})},
                           **v3_router_fields(hf)).replace(**fields)


def dsa_hf(cfg: ModelConfig, **extra) -> dict:
    if cfg.dsa_topk is None or cfg.q_lora_rank is None:
        raise LlmarchError(f"model_type {cfg.hf_model_type} needs DeepSeek Sparse Attention (dsa_topk) and "
                           "q_lora_rank")
    if cfg.n_experts and (cfg.router_scoring != "sigmoid" or not cfg.expert_bias):
        raise LlmarchError(f"model_type {cfg.hf_model_type} routes by sigmoid scores with an expert bias "
                           "(router_scoring 'sigmoid', expert_bias True)")
    return deepseek_hf(cfg, norm_topk_prob=cfg.router_renormalize, index_topk=cfg.dsa_topk,
                       index_n_heads=cfg.dsa_heads, index_head_dim=cfg.dsa_head_dim, **extra)


def from_config(cfg: ModelConfig) -> dict:
    if any(cfg.for_layer(i).dsa_shared for i in range(cfg.n_layers)):
        raise LlmarchError("model_type deepseek_v32 runs an indexer in every layer: dsa_shared layers are GLM-5's "
                           "(glm_moe_dsa)")
    return dsa_hf(cfg, architectures=["DeepseekV32ForCausalLM"])


FAMILIES.register("deepseek_v32")(Family(dsa_rules("same"), lambda hf: dsa_config(hf, 64), from_config, IGNORE,
                                         mtp=True))
