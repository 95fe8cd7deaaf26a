"""Sapient's HRM-Text (`model_type: hrm_text`, transformers' HrmTextForCausalLM): the Hierarchical Reasoning Model's two
recurrent modules (recurrence 'hrm', layers/recurrence.py) over the token embeddings times embedding_scale, each
module num_layers_per_stack pre-norm blocks ending in a norm, every norm an RMSNorm without a gain (rmsnorm_plain):
multi-head attention with RoPE and an output gate sigmoid(x W_g) per head dim (attn_output_gate; the checkpoint's
fused gqkv_proj, rows gate | q | k | v, rejoined with each head's gate rows after its query rows), a SwiGLU MLP. Our
blocks 0..N-1 are the low-level module (`model.L_module.layers.*`), N..2N-1 the high-level one
(`model.H_module.layers.*`); `model.z_L_init` is z_L's start. transformers' config.json counts num_hidden_layers as
one layer per invocation, N H_cycles (L_cycles + 1), beside num_layers_per_stack = N. Its prefix-LM mask (prefix_lm
with token_type_ids) applies only where the caller passes token type ids, which llmarch's causal decoding does not;
L_bp_cycles only routes training gradients."""
from __future__ import annotations

import torch

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, rope_fields, rope_parameters
from .mapping import JOINS, Rule, _join_gated_q, _split_gated_q


def _join_gqkv(parts, cfg):
    """gqkv_proj (rows: the gate, q, k, v projections, each heads x head_dim) -> our qkv_proj, each head's gate rows
    after its query rows."""
    gate, q, k, v = parts[0].chunk(4)
    return _join_gated_q([q, gate, k, v], cfg)


def _split_gqkv(t, cfg):
    q, gate, k, v = _split_gated_q(t, cfg)
    return [torch.cat([gate, q, k, v])]


JOINS["hrm_gqkv"] = (_join_gqkv, _split_gqkv)


def _module_rules(cfg: ModelConfig) -> list[Rule]:
    """Each block's tensors, under the module (and index within it) the block belongs to."""
    rules, half = [], cfg.n_layers // 2
    for i in range(cfg.n_layers):
        hf, ours = f"model.{'L' if i < half else 'H'}_module.layers.{i % half}.", f"blocks.{i}."
        rules += [Rule.of(hf + "attn.gqkv_proj.weight", ours + "attn.qkv_proj.weight", "hrm_gqkv"),
                  Rule.of(hf + "attn.o_proj.weight", ours + "attn.o_proj.weight"),
                  Rule.of(hf + "mlp.gate_up_proj.weight", ours + "mlp.gate_up.weight"),
                  Rule.of(hf + "mlp.down_proj.weight", ours + "mlp.down.weight")]
    return rules


RULES = [Rule.of("model.embed_tokens.weight", "embed.weight"), Rule.of("model.z_L_init", "recurrence.low_init"),
         Rule.of("lm_head.weight", "lm_head.weight")]


def to_config(hf: dict) -> ModelConfig:
    if hf.get("attention_bias") or hf.get("mlp_bias"):
        raise LlmarchError("hrm_text: attention_bias and mlp_bias are not supported")
    act = hf.get("hidden_act", "silu")
    if act != "silu":
        raise LlmarchError(f"hrm_text: hidden_act {act!r} is not supported (silu: a SwiGLU MLP)")
    d, heads = hf["hidden_size"], hf["num_attention_heads"]
    n = hf.get("num_layers_per_stack") or hf["num_hidden_layers"]  # older configs: the per-module count
    scale = hf.get("embedding_scale")
    return ModelConfig(
        name=hf.get("_name_or_path") or hf["model_type"], hf_model_type="hrm_text", vocab_size=hf["vocab_size"],
        d_model=d, n_layers=2 * n, n_heads=heads, n_kv_heads=heads, head_dim=hf.get("head_dim") or d // heads,
        ffn="swiglu", ffn_hidden=hf["intermediate_size"], norm="rmsnorm_plain", norm_eps=hf.get("rms_norm_eps", 1e-6),
        final_norm=False, positions="rope", bias=False, norm_bias=False, attn_output_gate=True,
        tie_embeddings=hf.get("tie_word_embeddings", False), context_length=hf.get("max_position_embeddings", 2048),
        embed_multiplier=float(scale if scale is not None else 1.0 / hf.get("initializer_range", 0.02)),
        recurrence="hrm", hrm_high_cycles=hf.get("H_cycles", 2), hrm_low_cycles=hf.get("L_cycles", 3),
        **rope_fields(hf))


def _needs(cfg: ModelConfig) -> str | None:
    if cfg.recurrence != "hrm" or cfg.norm != "rmsnorm_plain" or not cfg.attn_output_gate or cfg.bias \
            or cfg.qkv_bias or cfg.o_bias or cfg.n_kv_heads != cfg.n_heads or cfg.ffn != "swiglu" \
            or cfg.qk_norm != "none" or cfg.positions != "rope" or cfg.sliding_window is not None:
        return ("recurrence 'hrm' over multi-head attention with RoPE and an output gate, gainless RMSNorms, a SwiGLU "
                "MLP and no biases")
    return None


def from_config(cfg: ModelConfig) -> dict:
    n = cfg.n_layers // 2
    return dict(model_type="hrm_text", architectures=["HrmTextForCausalLM"], vocab_size=cfg.vocab_size,
                hidden_size=cfg.d_model, intermediate_size=cfg.ffn_hidden, num_attention_heads=cfg.n_heads,
                head_dim=cfg.head_dim, hidden_act="silu", max_position_embeddings=cfg.context_length,
                rms_norm_eps=cfg.norm_eps, tie_word_embeddings=cfg.tie_embeddings,
                rope_parameters=rope_parameters(cfg), attention_bias=False, mlp_bias=False,
                H_cycles=cfg.hrm_high_cycles, L_cycles=cfg.hrm_low_cycles, embedding_scale=cfg.embed_multiplier,
                num_layers_per_stack=n, num_hidden_layers=n * cfg.hrm_high_cycles * (cfg.hrm_low_cycles + 1))


FAMILIES.register("hrm_text")(Family(RULES, to_config, from_config, IGNORE, needs=_needs, more_rules=_module_rules))
