"""Aleph Alpha Kolibri-1 (`model_type: kolibri1`, transformers' Kolibri1ForCausalLM): EXAONE 4.0's attention (a
per-head RMSNorm on q and k before RoPE; the layers `layer_types` names sliding attend over sliding_window keys with
RoPE, the full ones to every key without positions, by default full on every 5th layer; no biases) in GLM-4's
sandwich-norm blocks (a norm on each sublayer's output too, stored as `post_attn_norm` and `post_ffn_norm`:
norm_placement 'sandwich'), every FFN a mixture: experts chosen by top-k of their router logits plus an expert bias
(`moe.router.expert_bias`; router_bias_on_logits), weighted by the sigmoid of the chosen logits, renormalised where
norm_topk_prob, plus an ungated shared expert (`mlp.shared_experts`, shared_expert_intermediate_size wide)."""
from __future__ import annotations

from ..config import ModelConfig
from .deepseek_v2 import moe_rules
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf
from .mapping import Rule
from .mixtral import STACKED, moe_fields, shared_fields
from .qwen3 import FULL, SLIDING, nope_window_fields, nope_window_hf

_L, _B = "model.layers.{i}.", "blocks.{i}."
RULES = [r for r in LLAMA_RULES if "layernorm" not in r.hf[0]] + [
    *[Rule.of(_L + f"self_attn.{n}_norm.weight", _B + f"attn.{n}_norm.weight") for n in "qk"],
    Rule.of(_L + "input_layernorm.weight", _B + "ln1.weight"),
    Rule.of(_L + "post_attn_norm.weight", _B + "post_ln1.weight"),
    Rule.of(_L + "post_attention_layernorm.weight", _B + "ln2.weight"),
    Rule.of(_L + "post_ffn_norm.weight", _B + "post_ln2.weight"),
    *[r for r in moe_rules() if not r.ours.endswith("expert_bias")],
    Rule.of(_L + "moe.router.expert_bias", _B + "mlp.router.expert_bias"),
]


def kolibri_fields(hf: dict) -> dict:
    """What Kolibri-1 and 1.1 share: the attention's QK-norm, sandwich norms and the router, experts and shared
    expert of their mixtures."""
    width = int(hf.get("moe_intermediate_size", 512))
    return dict(qk_norm="head", norm_placement="sandwich", expert_hidden=width, router_scoring="sigmoid",
                expert_bias=True, router_bias_on_logits=True,
                router_renormalize=bool(hf.get("norm_topk_prob", False)), **moe_fields(hf),
                **shared_fields(int(hf.get("shared_expert_intermediate_size", 512)), width))


def to_config(hf: dict) -> ModelConfig:
    width, n = int(hf.get("moe_intermediate_size", 512)), hf["num_hidden_layers"]
    types = hf.get("layer_types") or [FULL if (i + 1) % 5 == 0 else SLIDING for i in range(n)]
    return llama_like_config({**hf, "intermediate_size": width, "attention_bias": False, "mlp_bias": False},
                             **kolibri_fields(hf), **nope_window_fields({**hf, "layer_types": types}))


def kolibri_needs(cfg: ModelConfig, dense_first: bool = False) -> str | None:
    """What the layout of Kolibri-1 (and, with dense_first layers, 1.1) cannot hold, or None."""
    if cfg.qk_norm != "head" or cfg.norm_placement != "sandwich" or cfg.bias or cfg.qkv_bias or cfg.o_bias \
            or cfg.value_width != cfg.head_dim or cfg.attn_output_gate or cfg.sliding_window is not None:
        return "a per-head QK-norm, sandwich norms, no biases, values of head_dim, no gate and windows per layer type"
    if not cfg.n_experts or not cfg.router_bias_on_logits or cfg.router_scale != 1.0 or cfg.n_shared_experts != 1 \
            or cfg.shared_expert_gate or cfg.moe_period != 1 or (cfg.moe_dense_first and not dense_first) \
            or cfg.router_softcap is not None:
        where = " after the first dense ones" if dense_first else ""
        return (f"a mixture on every layer{where}, chosen by logits plus an expert bias (router_bias_on_logits), "
                "unscaled, beside one ungated shared expert")
    return None


def from_config(cfg: ModelConfig) -> dict:
    out = llama_like_hf(cfg, architectures=["Kolibri1ForCausalLM"], num_local_experts=cfg.n_experts,
                        num_experts_per_tok=cfg.experts_per_token, moe_intermediate_size=cfg.expert_hidden,
                        shared_expert_intermediate_size=cfg.shared_hidden, norm_topk_prob=cfg.router_renormalize,
                        **nope_window_hf(cfg))
    for key in ("mlp_bias", "attention_bias", "intermediate_size"):
        out.pop(key)
    return out


FAMILIES.register("kolibri1")(Family(RULES, to_config, from_config, IGNORE, stacked_experts=STACKED,
                                     needs=kolibri_needs))
