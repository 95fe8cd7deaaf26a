"""AFMoE (`model_type: afmoe`; Arcee AI 2025, Trinity Mini and Nano): a decoder of parts llmarch has, put together:
- attention with a per-head RMSNorm on q and k (qk_norm 'head') and an output gate, sigmoid(x W_g) times each head's
  output before o_proj (attn_output_gate; Qiu et al. 2025, "Gated Attention for LLMs"), whose `gate_proj` is stored
  apart from q_proj (joined per head into our qkv_proj: mapping.JOINS "gated_q");
- layer types as Command R7B's: `sliding_attention` layers slide over sliding_window keys with RoPE, `full_attention`
  layers see every key without positions (by default every global_attn_every_n_layers-th layer full);
- sandwich norms (norm_placement 'sandwich': input_layernorm, post_attention_layernorm, pre_mlp_layernorm,
  post_mlp_layernorm);
- num_dense_layers dense SwiGLU layers first, then DeepSeek-V3's routing without groups: sigmoid scores, an expert
  bias (`mlp.expert_bias`) for the choice only, the chosen scores renormalised and times route_scale, plus shared
  experts of moe_intermediate_size x num_shared_experts;
- mup_enabled: token embeddings times sqrt(hidden_size) (embed_scale)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .deepseek_v2 import moe_rules
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf
from .mapping import Rule
from .mixtral import STACKED
from .qwen3 import nope_window_fields, nope_window_hf

_A, _L = "model.layers.{i}.self_attn.", "model.layers.{i}."
RULES = [r for r in LLAMA_RULES if "layernorm" not in r.hf[0] and ".qkv_proj." not in r.ours] + [
    Rule.of(tuple(_A + f"{p}_proj.weight" for p in ("q", "gate", "k", "v")), "blocks.{i}.attn.qkv_proj.weight",
            "gated_q"),
    *[Rule.of(_A + f"{n}_norm.weight", f"blocks.{{i}}.attn.{n}_norm.weight") for n in "qk"],
    Rule.of(_L + "input_layernorm.weight", "blocks.{i}.ln1.weight"),
    Rule.of(_L + "post_attention_layernorm.weight", "blocks.{i}.post_ln1.weight"),
    Rule.of(_L + "pre_mlp_layernorm.weight", "blocks.{i}.ln2.weight"),
    Rule.of(_L + "post_mlp_layernorm.weight", "blocks.{i}.post_ln2.weight"),
    *moe_rules("expert_bias", router="router.gate.weight"),
]


def sigmoid_moe_fields(hf: dict, scale: float, dense_first: int) -> dict:
    """The mixture AFMoE and HY V3 share: `num_experts` routed experts of moe_intermediate_size after `dense_first`
    dense layers, chosen by sigmoid score plus an expert bias (no groups), their scores renormalised and times
    `scale`, plus shared experts of moe_intermediate_size x num_shared_experts; none without experts."""
    experts = int(hf.get("num_experts") or 0)
    if not experts:
        return {}
    return dict(n_experts=experts, experts_per_token=int(hf["num_experts_per_tok"]),
                expert_hidden=int(hf["moe_intermediate_size"]), n_shared_experts=int(hf.get("num_shared_experts") or 0),
                router_scoring="sigmoid", expert_bias=True, router_renormalize=True, router_scale=scale,
                moe_dense_first=dense_first)


def sigmoid_moe_hf(cfg: ModelConfig) -> dict:
    """sigmoid_moe_fields inverted (the scale and dense layers each family names its own way), or an error naming
    what of cfg's mixture it cannot hold."""
    if cfg.n_experts and (cfg.router_scoring != "sigmoid" or not cfg.expert_bias or not cfg.router_renormalize
                          or cfg.router_groups > 1 or cfg.moe_period != 1 or cfg.shared_expert_gate
                          or cfg.shared_hidden != cfg.n_shared_experts * cfg.expert_hidden
                          or cfg.capacity_factor is not None or cfg.expert_capacity is not None):
        raise LlmarchError(f"model_type {cfg.hf_model_type} routes by renormalised sigmoid scores with an expert "
                           "bias, no groups, to uncapped experts after the dense first layers, with ungated shared "
                           "experts")
    return dict(num_experts=cfg.n_experts, num_experts_per_tok=cfg.experts_per_token,
                moe_intermediate_size=cfg.expert_hidden, num_shared_experts=cfg.n_shared_experts)


# AfmoeConfig's defaults for what a config.json may leave out
DEFAULTS = dict(rms_norm_eps=1e-5, head_dim=128, num_experts=64, num_experts_per_tok=6, num_shared_experts=2,
                moe_intermediate_size=1408, num_dense_layers=1, route_scale=1.0, global_attn_every_n_layers=4,
                sliding_window=1024)


def to_config(hf: dict) -> ModelConfig:
    hf = {**DEFAULTS, **hf}
    if hf.get("attention_bias") or hf.get("mlp_bias"):
        raise LlmarchError("afmoe: attention_bias or mlp_bias is not supported")
    if hf.get("sliding_window") is None:
        raise LlmarchError("afmoe: sliding_window null is not supported (its full layers have no positions)")
    n = hf["num_hidden_layers"]
    every = hf["global_attn_every_n_layers"] or 4
    types = hf.get("layer_types") or ["sliding_attention" if (i + 1) % every else "full_attention" for i in range(n)]
    moe = sigmoid_moe_fields(hf, float(hf["route_scale"] or 1.0), int(hf["num_dense_layers"] or 0))
    return llama_like_config(hf, qk_norm="head", attn_output_gate=True,
                             norm_placement="sandwich", embed_scale=bool(hf.get("mup_enabled", False)),
                             **nope_window_fields({**hf, "layer_types": types}), **moe)


def from_config(cfg: ModelConfig) -> dict:
    if cfg.qk_norm != "head" or not cfg.attn_output_gate or cfg.norm_placement != "sandwich" or cfg.bias \
            or cfg.qkv_bias or cfg.norm != "rmsnorm" or cfg.ffn != "swiglu":
        raise LlmarchError("model_type afmoe needs qk_norm='head', attn_output_gate, sandwich RMSNorms, SwiGLU and "
                           "no biases")
    moe = sigmoid_moe_hf(cfg)
    window = nope_window_hf(cfg)
    if window["sliding_window"] is None:
        raise LlmarchError("model_type afmoe needs sliding_attention layers (a window, RoPE) and full_attention "
                           "ones (no positions)")
    out = llama_like_hf(cfg, architectures=["AfmoeForCausalLM"], mup_enabled=cfg.embed_scale, **window, **moe,
                        route_scale=cfg.router_scale,
                        num_dense_layers=cfg.moe_dense_first if cfg.n_experts else cfg.n_layers)
    out.pop("mlp_bias")
    return out


FAMILIES.register("afmoe")(Family(RULES, to_config, from_config, IGNORE, stacked_experts=STACKED))
