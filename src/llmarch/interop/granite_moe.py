"""IBM Granite 3.x mixtures of experts (`model_type: granitemoe`, transformers' GraniteMoeForCausalLM; granite-3.0-1b-
a400m and 3b-a800m): Granite's layout and four scalars (granite.py) with every FFN a mixture of SwiGLU experts, as
Mixtral's (mixtral.py), stored stacked as ours are: `block_sparse_moe.input_linear` (E, 2I, C), gate rows first
(`experts.gate_up`), `output_linear` (E, C, I) (`experts.down`), and the router `block_sparse_moe.router.layer`
(E, C). The router takes the top k of its logits and a softmax over those k: Mixtral's softmax over all experts
renormalised over the top k, the same weights. No expert biases. `granitemoeshared` (IBM's moe-*-shared models) adds
an ungated shared SwiGLU MLP beside the experts (`shared_mlp.input_linear`, gate rows first, and `output_linear`)
of shared_intermediate_size: llmarch's shared experts (shared_hidden where that is no multiple of the experts')."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .granite import NEEDS, scalars, scalars_hf, unexpressible
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf
from .mapping import Rule
from .mixtral import check_exportable, moe_fields, moe_hf, shared_fields

_MOE = "model.layers.{i}.block_sparse_moe."
RULES = [r for r in LLAMA_RULES if ".mlp." not in r.ours] + [
    Rule.of(_MOE + "router.layer.weight", "blocks.{i}.mlp.router.weight"),
    Rule.of(_MOE + "input_linear.weight", "blocks.{i}.mlp.experts.gate_up"),
    Rule.of(_MOE + "output_linear.weight", "blocks.{i}.mlp.experts.down"),
]
# transformers 5's names for the same stacked tensors in memory (PEFT's target_parameters)
STACKED = [Rule.of(_MOE + "experts.gate_up_proj", "blocks.{i}.mlp.experts.gate_up"),
           Rule.of(_MOE + "experts.down_proj", "blocks.{i}.mlp.experts.down")]
_MOE_NEEDS = {k: v for k, v in NEEDS.items() if k != "n_experts"}


def _unexpressible(cfg: ModelConfig) -> str | None:
    if cfg.n_experts == 0:
        return "a mixture of experts (n_experts > 0); a dense Granite is model_type granite"
    if cfg.head_dim * cfg.n_heads != cfg.d_model:
        return f"head_dim = d_model / n_heads = {cfg.d_model // cfg.n_heads} (its config has no head_dim)"
    return unexpressible(cfg, _MOE_NEEDS)


def to_config(hf: dict) -> ModelConfig:
    if hf.get("attention_bias"):  # o_proj's bias is llmarch's `bias`, which would give the experts biases too
        raise LlmarchError("model_type granitemoe with attention_bias=True: llmarch ties o_proj's bias to the "
                           "FFN's, and Granite MoE's experts have none")
    return llama_like_config(hf, **scalars(hf), **moe_fields(hf))


def from_config(cfg: ModelConfig) -> dict:
    check_exportable(cfg, "granitemoe")
    if cfg.moe_period != 1 or not cfg.router_renormalize or cfg.expert_hidden != cfg.ffn_hidden or cfg.bias:
        raise LlmarchError("model_type granitemoe needs every FFN a mixture (moe_period 1) of experts of width "
                           "ffn_hidden without biases, with renormalised top-k weights")
    out = llama_like_hf(cfg, architectures=["GraniteMoeForCausalLM"], **scalars_hf(cfg), **moe_hf(cfg))
    for key in ("mlp_bias", "router_jitter_noise", "head_dim"):  # not GraniteMoeConfig's: head_dim is d / heads
        out.pop(key)
    return out


FAMILIES.register("granitemoe")(Family(RULES, to_config, from_config, IGNORE, stacked_experts=STACKED,
                                       needs=_unexpressible))


_SHARED = "model.layers.{i}.shared_mlp."
SHARED_RULES = RULES + [Rule.of(_SHARED + "input_linear.weight", "blocks.{i}.mlp.shared.gate_up.weight"),
                        Rule.of(_SHARED + "output_linear.weight", "blocks.{i}.mlp.shared.down.weight")]


def shared_config(hf: dict) -> ModelConfig:
    cfg = to_config(hf)
    return cfg.replace(hf_model_type="granitemoeshared",
                       **shared_fields(int(hf.get("shared_intermediate_size") or 0), cfg.expert_hidden))


def shared_hf(cfg: ModelConfig) -> dict:
    if cfg.shared_expert_gate:
        raise LlmarchError("model_type granitemoeshared has an ungated shared MLP (shared_expert_gate=False)")
    out = from_config(cfg.replace(hf_model_type="granitemoe", n_shared_experts=0))
    return {**out, "model_type": "granitemoeshared", "architectures": ["GraniteMoeSharedForCausalLM"],
            "shared_intermediate_size": cfg.shared_hidden if cfg.n_shared_experts else 0}


FAMILIES.register("granitemoeshared")(Family(SHARED_RULES, shared_config, shared_hf, IGNORE, stacked_experts=STACKED,
                                             needs=_unexpressible))
