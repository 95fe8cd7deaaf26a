"""PowerInfer's SmallThinker 4B-A0.6B and 21B-A3B (`model_type: smallthinker`, remote code SmallThinkerForCausalLM;
Song et al. 2025, "SmallThinker: A Family of Efficient Large Language Models Natively Trained for Local
Deployment"): LLaMA's attention (no biases, RMSNorm) with every FFN a mixture of ReGLU experts, relu(x W_gate) *
x W_up (`block_sparse_moe.experts.{e}.gate`, `up`, `down`: ffn 'reglu'), and no dense FFN. Its router
(`primary_router`) reads the block's input, before the attention norm (router_early), the experts the FFN's normed
input: the top `moe_num_active_primary_experts` of `moe_num_primary_experts` logits, weighted by a softmax over them
(`moe_primary_router_apply_softmax`) or by their sigmoids renormalised to sum to 1. Per layer, `rope_layout[i]` 0 is
a NoPE layer (positions 'none') and `sliding_window_layout[i]` 1 a sliding-window one (`sliding_window_size`): one
layer type for each pair, named as SmolLM3's (full_attention_nope ...). RoPE scaling is refused."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .expressible import refuse_unless_read_back
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, causal_only
from .mapping import Rule
from .qwen3 import FULL, SLIDING
from .smollm3 import NOPE

_MOE = "model.layers.{i}.block_sparse_moe."
RULES = [r for r in LLAMA_RULES if ".mlp." not in r.ours and not r.ours.endswith(".bias")] + [
    Rule.of(_MOE + "primary_router.weight", "blocks.{i}.mlp.router.weight"),
    Rule.of((_MOE + "experts.{e}.gate.weight", _MOE + "experts.{e}.up.weight"), "blocks.{i}.mlp.experts.gate_up"),
    Rule.of(_MOE + "experts.{e}.down.weight", "blocks.{i}.mlp.experts.down"),
]


def _layer_types(hf: dict, n: int) -> tuple[list[str], dict]:
    rope = hf.get("rope_layout") or [1] * n
    sliding = hf.get("sliding_window_layout") or [0] * n
    if len(rope) != n or len(sliding) != n:
        raise LlmarchError(f"smallthinker: rope_layout and sliding_window_layout need {n} entries, one a layer")
    types = [(SLIDING if s else FULL) + ("" if r else NOPE) for r, s in zip(rope, sliding)]
    overrides = {t: {**({"positions": "none"} if t.endswith(NOPE) else {}),
                     **({"sliding_window": hf["sliding_window_size"]} if t.startswith(SLIDING) else {})}
                 for t in dict.fromkeys(types)}
    return types, {t: f for t, f in overrides.items() if f}


def to_config(hf: dict) -> ModelConfig:
    if hf.get("rope_scaling"):
        raise LlmarchError(f"smallthinker: rope_scaling {hf['rope_scaling']!r} is not supported")
    n, d, heads = hf["num_hidden_layers"], hf["hidden_size"], hf["num_attention_heads"]
    types, overrides = _layer_types(hf, n)
    width = hf["moe_ffn_hidden_size"]
    return ModelConfig(
        name=hf.get("_name_or_path") or "smallthinker", hf_model_type="smallthinker", vocab_size=hf["vocab_size"],
        d_model=d, n_layers=n, n_heads=heads, n_kv_heads=hf.get("num_key_value_heads") or heads,
        head_dim=hf.get("head_dim") or d // heads, ffn="reglu", ffn_hidden=width, expert_hidden=width,
        norm="rmsnorm", norm_eps=hf.get("rms_norm_eps", 1e-6), positions="rope",
        rope_theta=float(hf.get("rope_theta", 1e6)), bias=False, norm_bias=False,
        tie_embeddings=hf.get("tie_word_embeddings", True), context_length=hf.get("max_position_embeddings", 4096),
        n_experts=hf["moe_num_primary_experts"], experts_per_token=hf["moe_num_active_primary_experts"],
        router_scoring="softmax" if hf.get("moe_primary_router_apply_softmax") else "sigmoid",
        router_renormalize=True, router_early=True,
        layer_types=types if overrides else None, layer_overrides=overrides or None)


def from_config(cfg: ModelConfig) -> dict:
    causal_only(cfg)
    layers = [cfg.for_layer(i) for i in range(cfg.n_layers)]
    windows = {c.sliding_window for c in layers} - {None}
    if len(windows) > 1:
        raise LlmarchError("model_type smallthinker has one sliding_window_size for all sliding layers")
    hf = dict(model_type="smallthinker", architectures=["SmallThinkerForCausalLM"], vocab_size=cfg.vocab_size,
              hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
              num_key_value_heads=cfg.n_kv_heads, head_dim=cfg.head_dim, rms_norm_eps=cfg.norm_eps,
              rope_theta=cfg.rope_theta, max_position_embeddings=cfg.context_length,
              rope_layout=[int(c.positions == "rope") for c in layers],
              sliding_window_layout=[int(c.sliding_window is not None) for c in layers],
              sliding_window_size=next(iter(windows), 4096), moe_num_primary_experts=cfg.n_experts,
              moe_ffn_hidden_size=cfg.expert_hidden, moe_num_active_primary_experts=cfg.experts_per_token,
              moe_primary_router_apply_softmax=cfg.router_scoring == "softmax",
              tie_word_embeddings=cfg.tie_embeddings, rope_scaling=None)
    return refuse_unless_read_back(cfg, hf, to_config)


FAMILIES.register("smallthinker")(Family(RULES, to_config, from_config, IGNORE))
