"""Ergo (`model_type: ergo`; Amazon's Ergo, transformers' ErgoForCausalLM), read and written in the layout its
checkpoints keep (its training framework's names: `tok_embeddings`, `layers.{i}.attention.wqkv`, `feed_forward.*`,
`output`, which transformers renames on load). A decoder of:
- attention from one fused q|k|v projection (`wqkv`, rows q, k, v as our qkv_proj) with a per-head RMSNorm on q and k
  (qk_norm 'head'), RoPE turning adjacent dims (2j, 2j + 1) (transformers' repeat_interleave of the frequencies),
  whose q and k rows and norm gains are reordered per head to our halves (mapping "rope_pairs_qkv", "rope_pairs");
  `sliding_attention` layers over sliding_window keys with RoPE, `full_attention` layers (every
  global_attention_every_n_layers-th) over every key without positions, their scores times global_attention_scale
  where a checkpoint sets it (q and k each times its square root: our attn_scale of that layer type);
- sandwich norms (attention_norm, post_attention_norm, ffn_norm, post_ffn_norm), each sublayer's output joining the
  stream by a gate learned per channel, sigmoid(w) y + sqrt(1 + sigmoid(w)) exp(-softplus(w) / 2) x (residual_mix
  'gated', `post_*_residual.scale`);
- num_dense_blocks leading layers with a squared-ReLU MLP (up, down) of first_dense_intermediate_size, then a mixture
  of squared-ReLU experts chosen by sigmoid score plus an expert bias, renormalised and times moe_routed_scaling_factor,
  each expert's output through an RMSNorm with a gain of its own (`expert_output_norm.scale`, E x d: expert_out_norm),
  beside one shared squared-ReLU expert whose output has its RMSNorm too (`shared_expert_output_norm`). The router's
  `gate_kernel` and the shared expert's projections are stored (in, out), the experts' (E, in, out).
Ergo keeps its norms, gates and router in fp32 and its embeddings and LM head too, as llmarch's fp32 models do; its
RoPE angles in float64, which fp32 cos and sin round alike at these positions."""
from __future__ import annotations

import math

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import rope_fields, rope_parameters
from .mapping import Rule
from .qwen3 import FULL, SLIDING

_L, _B, _F = "layers.{i}.", "blocks.{i}.", "layers.{i}.feed_forward."
RULES = [
    Rule.of("tok_embeddings.weight", "embed.weight"),
    Rule.of(_L + "attention.wqkv.weight", _B + "attn.qkv_proj.weight", "rope_pairs_qkv"),
    Rule.of(_L + "attention.wo.weight", _B + "attn.o_proj.weight"),
    *[Rule.of(_L + f"attention.{n}_norm.weight", _B + f"attn.{n}_norm.weight", "rope_pairs") for n in "qk"],
    Rule.of(_L + "attention_norm.weight", _B + "ln1.weight"),
    Rule.of(_L + "post_attention_norm.weight", _B + "post_ln1.weight"),
    Rule.of(_L + "ffn_norm.weight", _B + "ln2.weight"),
    Rule.of(_L + "post_ffn_norm.weight", _B + "post_ln2.weight"),
    Rule.of(_L + "post_attention_residual.scale", _B + "res_attn.weight"),
    Rule.of(_L + "post_ffn_residual.scale", _B + "res_mlp.weight"),
    Rule.of(_F + "up.weight", _B + "mlp.up.weight"),
    Rule.of(_F + "down.weight", _B + "mlp.down.weight"),
    Rule.of(_F + "gate_kernel", _B + "mlp.router.weight", "transposed"),
    Rule.of(_F + "router_bias", _B + "mlp.router.expert_bias"),
    Rule.of(_F + "up_proj", _B + "mlp.experts.up", "experts_transposed"),
    Rule.of(_F + "down_proj", _B + "mlp.experts.down", "experts_transposed"),
    Rule.of(_F + "expert_output_norm.scale", _B + "mlp.experts.out_gain"),
    Rule.of(_F + "shared_up_proj", _B + "mlp.shared.up.weight", "transposed"),
    Rule.of(_F + "shared_down_proj", _B + "mlp.shared.down.weight", "transposed"),
    Rule.of(_F + "shared_expert_output_norm.scale", _B + "mlp.shared_norm.weight"),
    Rule.of("norm.weight", "ln_final.weight"),
    Rule.of("output.weight", "lm_head.weight"),
]
# ErgoConfig's defaults for what a config.json may leave out
DEFAULTS = dict(vocab_size=262144, hidden_size=8192, num_hidden_layers=64, num_attention_heads=64,
                num_key_value_heads=8, first_dense_intermediate_size=32768, num_dense_blocks=1,
                moe_intermediate_size=4096, shared_intermediate_size=8192, num_experts=256, num_experts_per_tok=8,
                moe_routed_scaling_factor=8 ** 0.5, max_position_embeddings=524288, rms_norm_eps=1e-12,
                sliding_window=512, global_attention_every_n_layers=4, global_attention_scale=None)


def _types(hf: dict) -> tuple[list[str], list[str]]:
    n, every, dense = hf["num_hidden_layers"], hf["global_attention_every_n_layers"], hf["num_dense_blocks"]
    types = hf.get("layer_types") or [SLIDING if (i + 1) % every else FULL for i in range(n)]
    mlps = hf.get("mlp_layer_types") or ["dense" if i < dense else "sparse" for i in range(n)]
    if set(types) - {FULL, SLIDING} or set(mlps) - {"dense", "sparse"} or len(types) != n or len(mlps) != n:
        raise LlmarchError(f"ergo: layer types {sorted(set(types) | set(mlps))} for {n} layers are not supported")
    first = mlps.index("sparse") if "sparse" in mlps else n
    if "dense" in mlps[first:]:
        raise LlmarchError(f"ergo: mlp_layer_types {mlps} (dense layers after sparse ones) is not supported")
    return list(types), first


def _rope(hf: dict) -> dict:
    params = hf.get("rope_parameters") or {}
    if "rope_type" in params or "rope_theta" in params:  # flat: the sliding layers' (ErgoConfig's reading)
        params = {SLIDING: params, FULL: None}
    if params.get(FULL) is not None:
        raise LlmarchError("ergo: RoPE on full_attention layers is not supported")
    sliding = {"rope_type": "default", "rope_theta": 1_000_000.0, **(params.get(SLIDING) or {})}
    return rope_fields({"rope_parameters": sliding, "max_position_embeddings": hf["max_position_embeddings"]})


def to_config(hf: dict) -> ModelConfig:
    hf = {**DEFAULTS, **hf}
    window = hf.get("local_attention_window", hf["sliding_window"])
    d, heads = hf["hidden_size"], hf["num_attention_heads"]
    types, dense = _types(hf)
    full = {"positions": "none"}
    if hf["global_attention_scale"] is not None:  # q and k times sqrt(s): scores times s
        full["attn_scale"] = float(hf["global_attention_scale"]) / math.sqrt(d // heads)
    overrides = {SLIDING: {"sliding_window": int(window)}, FULL: full}
    fields = dict(
        name=hf.get("_name_or_path") or "ergo", hf_model_type="ergo", vocab_size=hf["vocab_size"], d_model=d,
        n_layers=hf["num_hidden_layers"], n_heads=heads, n_kv_heads=hf["num_key_value_heads"], head_dim=d // heads,
        ffn="relu2", ffn_hidden=int(hf["first_dense_intermediate_size"]), norm="rmsnorm",
        norm_eps=float(hf["rms_norm_eps"]), positions="rope", bias=False, norm_bias=False, tie_embeddings=False,
        context_length=int(hf["max_position_embeddings"]), qk_norm="head", norm_placement="sandwich",
        residual_mix="gated", layer_types=types, layer_overrides={t: f for t, f in overrides.items() if t in types},
        **_rope(hf))
    if dense < len(types):
        fields.update(n_experts=int(hf["num_experts"]), experts_per_token=int(hf["num_experts_per_tok"]),
                      expert_hidden=int(hf["moe_intermediate_size"]), n_shared_experts=1,
                      shared_hidden=int(hf["shared_intermediate_size"]), router_scoring="sigmoid", expert_bias=True,
                      router_renormalize=True, router_scale=float(hf["moe_routed_scaling_factor"]),
                      moe_dense_first=dense, expert_out_norm=True)
    return ModelConfig(**fields)


def _needs(cfg: ModelConfig) -> str | None:
    lo = cfg.layer_overrides or {}
    scale = lo.get(FULL, {}).get("attn_scale")
    if cfg.qk_norm != "head" or cfg.norm_placement != "sandwich" or cfg.residual_mix != "gated" or cfg.bias \
            or cfg.qkv_bias or cfg.o_bias or cfg.norm != "rmsnorm" or cfg.ffn != "relu2" or cfg.tie_embeddings \
            or cfg.head_dim * cfg.n_heads != cfg.d_model or cfg.sliding_window is not None or cfg.attn_scale \
            or cfg.layer_types is None or set(cfg.layer_types) - {FULL, SLIDING} \
            or set(lo.get(SLIDING, {"sliding_window": 0})) != {"sliding_window"} \
            or lo.get(FULL, {"positions": "none"}) != {"positions": "none", **({} if scale is None else
                                                                                {"attn_scale": scale})}:
        return ("a per-head QK-norm, sandwich RMSNorms with gated residual adds, squared-ReLU FFNs, no biases, an "
                "untied head, head_dim = d_model / n_heads, and sliding_attention layers (a window, RoPE) beside "
                "full_attention ones (no positions, their own attn_scale at most)")
    if cfg.n_experts and (cfg.router_scoring != "sigmoid" or not cfg.expert_bias or not cfg.router_renormalize
                          or cfg.router_groups > 1 or cfg.n_shared_experts != 1 or not cfg.expert_out_norm
                          or cfg.moe_period != 1 or cfg.shared_expert_gate or cfg.router_bias_on_logits
                          or cfg.capacity_factor is not None or cfg.expert_capacity is not None):
        return ("a mixture after the dense first layers, routed by renormalised sigmoid scores with an expert bias "
                "and no groups, each expert's output normed (expert_out_norm), beside one ungated shared expert")
    return None


def from_config(cfg: ModelConfig) -> dict:
    n, dense = cfg.n_layers, cfg.moe_dense_first if cfg.n_experts else cfg.n_layers
    lo = cfg.layer_overrides
    scale = lo.get(FULL, {}).get("attn_scale")
    out = dict(model_type="ergo", architectures=["ErgoForCausalLM"], vocab_size=cfg.vocab_size,
               hidden_size=cfg.d_model, num_hidden_layers=n, num_attention_heads=cfg.n_heads,
               num_key_value_heads=cfg.n_kv_heads, first_dense_intermediate_size=cfg.ffn_hidden,
               num_dense_blocks=dense, max_position_embeddings=cfg.context_length, rms_norm_eps=cfg.norm_eps,
               rope_parameters={SLIDING: rope_parameters(cfg), FULL: None},
               sliding_window=lo.get(SLIDING, {}).get("sliding_window", 512), layer_types=list(cfg.layer_types),
               mlp_layer_types=["dense"] * dense + ["sparse"] * (n - dense), tie_word_embeddings=False,
               global_attention_scale=None if scale is None else scale * math.sqrt(cfg.head_dim))
    if cfg.n_experts:
        out.update(num_experts=cfg.n_experts, num_experts_per_tok=cfg.experts_per_token,
                   moe_intermediate_size=cfg.expert_hidden, shared_intermediate_size=cfg.shared_hidden,
                   moe_routed_scaling_factor=cfg.router_scale)
    return out


FAMILIES.register("ergo")(Family(RULES, to_config, from_config, needs=_needs))
