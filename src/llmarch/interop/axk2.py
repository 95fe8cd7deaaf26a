"""A.X-K2 (`model_type: axk2`; SK Telecom 2026, transformers' AXK2ForCausalLM): DeepSeek-V3.2 (deepseek_v32.py:
latent attention with a compressed query, interleaved RoPE rows, a lightning indexer picking index_topk keys per
query; DeepSeek-V3's mixture after the dense first layers) with two parts llmarch added for it:
- the query's up-projection reads [norm(c^Q), c^Q] and gives each head an output gate beside its query
  (`q_b_proj`, rows per head [q^C, q^R, g], the released checkpoints' fused layout: mla_q_gate), the head's output
  times sigmoid(g) before o_proj;
- the norm before each mixer, and before each mixture FFN, followed by a low-rank gate on its own output,
  y * sigmoid(silu(y W_down) W_up) (`input_layernorm.norm`, `.W_down`, `.W_up`: norm_gate_rank, gated_norm_rank);
  a dense layer's post_attention_layernorm stays a plain RMSNorm.
A.X-K2-Light routes without expert groups (n_group null); the grouped routing of the larger releases fills the
masked experts' scores with 0, not -inf (so a negative biased score there ranks below a masked expert), which is
refused here."""
from __future__ import annotations

import torch

from ..config import ModelConfig
from ..errors import LlmarchError
from .deepseek_v2 import IGNORE, _interleaved, first_dense
from .deepseek_v32 import dsa_config, dsa_hf, dsa_rules
from .hf import FAMILIES, Family
from .mapping import LAYOUTS, Rule

_A, _L, _B = "model.layers.{i}.self_attn.", "model.layers.{i}.", "blocks.{i}."


def _q_gate_rows(t: torch.Tensor, cfg, to_ours: bool) -> torch.Tensor:
    """q_b_proj rows, per head [nope (N), rope (R), gate (V)]: every head's rope rows reordered (interleaved RoPE)."""
    N, R, V = cfg.qk_nope_head_dim, cfg.head_dim, cfg.v_head_dim
    heads = t.reshape(cfg.n_heads, N + R + V, *t.shape[1:])
    rope = heads[:, N:N + R][:, _interleaved(R, to_ours)]
    return torch.cat((heads[:, :N], rope, heads[:, N + R:]), dim=1).reshape(t.shape)


LAYOUTS["mla_q_gate"] = (lambda t, cfg: _q_gate_rows(t, cfg, True), lambda t, cfg: _q_gate_rows(t, cfg, False),
                         lambda s: s)
RULES = [r for r in dsa_rules("same") if "q_b_proj" not in r.hf[0] and "input_layernorm" not in r.hf[0]] + [
    Rule.of(_A + "q_b_proj.weight", _B + "attn.q_gate_proj.weight", "mla_q_gate"),
    *[Rule.of(_L + f"{hf}.norm.weight", _B + f"{ours}.norm.weight") for hf, ours in (
        ("input_layernorm", "ln1"), ("post_attention_layernorm", "ln2"))],
    *[Rule.of(_L + f"{hf}.W_{w}.weight", _B + f"{ours}.gate_{w}.weight") for hf, ours in (
        ("input_layernorm", "ln1"), ("post_attention_layernorm", "ln2")) for w in ("down", "up")],
]
# AXK2Config's defaults (A.X-K2-Light's) for what a config.json may leave out
_DEFAULTS = dict(kv_lora_rank=128, q_lora_rank=384, qk_rope_head_dim=32, qk_nope_head_dim=64, v_head_dim=64,
                 num_experts_per_tok=8, n_routed_experts=128, n_shared_experts=1, routed_scaling_factor=2.5,
                 moe_intermediate_size=512, max_position_embeddings=131072, rms_norm_eps=1e-6, norm_topk_prob=True,
                 index_topk=2048, index_head_dim=128, index_n_heads=16, gated_norm_rank=16, first_k_dense_replace=1)


def to_config(hf: dict) -> ModelConfig:
    hf = {**_DEFAULTS, **hf}
    if hf.get("n_group") is not None:
        raise LlmarchError("axk2: grouped routing (n_group) is not supported: its masked experts score 0, not -inf")
    if int(hf.get("moe_layer_freq", 1)) != 1:
        raise LlmarchError("axk2: moe_layer_freq other than 1 is not supported")
    return dsa_config(hf, 16, mla_q_gate=True, norm_gate_rank=int(hf["gated_norm_rank"]))


def _needs(cfg: ModelConfig) -> str | None:
    if not cfg.mla_q_gate or not cfg.norm_gate_rank or cfg.router_groups > 1 or cfg.moe_period != 1 \
            or cfg.n_experts and cfg.router_bias_on_logits:
        return ("latent attention gated from its query projection (mla_q_gate), gated norms (norm_gate_rank) and "
                "routing without groups")
    return None


def from_config(cfg: ModelConfig) -> dict:
    out = dsa_hf(cfg, architectures=["AXK2ForCausalLM"], gated_norm_rank=cfg.norm_gate_rank, n_group=None,
                 topk_group=None, layer_types=["indexed_attention"] * cfg.n_layers)
    dense = first_dense(cfg) if cfg.n_experts else cfg.n_layers
    out.pop("first_k_dense_replace", None)
    out["mlp_layer_types"] = ["dense"] * dense + ["sparse"] * (cfg.n_layers - dense)
    return out


FAMILIES.register("axk2")(Family(RULES, to_config, from_config, IGNORE, needs=_needs))
