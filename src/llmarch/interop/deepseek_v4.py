"""DeepSeek-V4 (`model_type: deepseek_v4`; DeepSeek-AI 2026, DeepSeek-V4 report): each block between
manifold-constrained hyper-connections (hyper_connection 'mhc', hc_mult streams: layers/hyper.py), attention whose
one key/value head is both key and value, with a compressed, gainless-normed query, learned sinks, a sliding window
and a grouped output projection (mixer 'shared_kv': layers/shared_kv.py), and DeepSeekMoE with DeepSeek-V4's router
(sqrt(softplus) scores, an expert bias for the choice, the chosen scores renormalised and times
routed_scaling_factor; the first layers hash-routed by a token-id table, router_hash_layers) over SwiGLU experts
clamped at swiglu_limit (ffn 'swiglu_limited'), the shared expert clamped too.

Only `sliding_attention` layers are implemented: the compressed layers (compressed_sparse_attention,
heavily_compressed_attention: a compressor of every m tokens into one entry, and for CSA a lightning indexer picking
the top-k entries per query, with their own decoding state) are refused, which refuses the published checkpoints'
layer schedules. The MTP layers (mtp.*) are not loaded, as transformers does not load them.

Each head lays out its dims as [no RoPE (D - r) | RoPE (r, interleaved pairs)]; ours are [RoPE (r, halves) | no
RoPE]: the import reorders the query rows, the key/value rows, the key norm's gains and the columns of the grouped
output projection alike (layouts v4_rows, v4_cols), which leaves every product and norm unchanged. Names as
save_pretrained writes them; the reference checkpoint's (layers.*, embed.weight, hc_head_fn, ...) are read too."""
from __future__ import annotations

import torch

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .mapping import LAYOUTS, Rule

_L = "model.layers.{i}."
_A = _L + "attn."
_F = _L + "ffn."
_B = "blocks.{i}."
SCORINGS = ("sqrtsoftplus", "softmax", "sigmoid")


def _order(cfg, to_ours: bool) -> torch.Tensor:
    """A head's dim order from [nope | rope interleaved] to [rope halves | nope] (or back)."""
    D, r = cfg.head_dim, cfg.rotary_dim
    order = torch.cat((D - r + torch.arange(0, r, 2), D - r + torch.arange(1, r, 2), torch.arange(D - r)))
    return order if to_ours else order.argsort()


def _rows(t: torch.Tensor, cfg, to_ours: bool) -> torch.Tensor:
    """Rows in heads of head_dim (q_b_proj: H heads; kv_proj, kv_norm: one), each head's reordered."""
    D = cfg.head_dim
    return t.reshape(-1, D, *t.shape[1:])[:, _order(cfg, to_ours)].reshape(t.shape)


def _cols(t: torch.Tensor, cfg, to_ours: bool) -> torch.Tensor:
    """The grouped output projection's columns (a group's heads of head_dim each), each head's reordered."""
    D = cfg.head_dim
    return t.reshape(t.shape[0], -1, D)[:, :, _order(cfg, to_ours)].reshape(t.shape)


LAYOUTS["v4_rows"] = (lambda t, cfg: _rows(t, cfg, True), lambda t, cfg: _rows(t, cfg, False), lambda s: s)
LAYOUTS["v4_cols"] = (lambda t, cfg: _cols(t, cfg, True), lambda t, cfg: _cols(t, cfg, False), lambda s: s)


def _hc(hf: str, ours: str) -> list[Rule]:
    return [Rule.of(f"{hf}{a}", f"{ours}.{b}") for a, b in (("fn", "fn"), ("base", "bias"), ("scale", "scale"))]


RULES = [
    Rule.of("model.embed_tokens.weight", "embed.weight"),
    Rule.of(_A + "wq_a.weight", _B + "attn.q_a_proj.weight"),
    Rule.of(_A + "q_norm.weight", _B + "attn.q_a_norm.weight"),
    Rule.of(_A + "wq_b.weight", _B + "attn.q_b_proj.weight", "v4_rows"),
    Rule.of(_A + "wkv.weight", _B + "attn.kv_proj.weight", "v4_rows"),
    Rule.of(_A + "norm.weight", _B + "attn.kv_norm.weight", "v4_rows"),
    Rule.of(_A + "wo_a.weight", _B + "attn.o_a_proj.weight", "v4_cols"),
    Rule.of(_A + "wo_b.weight", _B + "attn.o_b_proj.weight"),
    Rule.of(_A + "attn_sink", _B + "attn.sinks"),
    Rule.of(_L + "attn_norm.weight", _B + "ln1.weight"),
    Rule.of(_L + "ffn_norm.weight", _B + "ln2.weight"),
    *_hc(_L + "hc_attn_", _B + "attn_hc"),
    *_hc(_L + "hc_ffn_", _B + "ffn_hc"),
    Rule.of(_F + "gate.weight", _B + "mlp.router.weight"),
    Rule.of(_F + "gate.bias", _B + "mlp.router.expert_bias"),
    Rule.of(_F + "gate.tid2eid", _B + "mlp.router.tid2eid"),
    Rule.of((_F + "experts.{e}.w1.weight", _F + "experts.{e}.w3.weight"), _B + "mlp.experts.gate_up"),
    Rule.of(_F + "experts.{e}.w2.weight", _B + "mlp.experts.down"),
    Rule.of((_F + "shared_experts.w1.weight", _F + "shared_experts.w3.weight"), _B + "mlp.shared.gate_up.weight"),
    Rule.of(_F + "shared_experts.w2.weight", _B + "mlp.shared.down.weight"),
    *_hc("model.hc_head.hc_", "hc_head"),
    Rule.of("model.norm.weight", "ln_final.weight"),
    Rule.of("head.weight", "lm_head.weight"),
]
STACKED = [Rule.of(_L + "mlp.experts.gate_up_proj", _B + "mlp.experts.gate_up"),
           Rule.of(_L + "mlp.experts.down_proj", _B + "mlp.experts.down")]


def canonical(name: str) -> str:
    """The reference checkpoint's names (no `model.` prefix, embed, hc_head_fn) as save_pretrained writes them."""
    if name.startswith("layers."):
        return "model." + name
    if name.startswith("hc_head_"):
        return "model.hc_head.hc_" + name[len("hc_head_"):]
    return {"embed.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight"}.get(name, name)


def _layer_types(hf: dict, n: int) -> None:
    types = hf.get("layer_types")
    if types is None and hf.get("compress_ratios") is not None:
        types = ["sliding_attention" if r == 0 else "compressed" for r in hf["compress_ratios"]]
    if types is None or set(types[:n]) != {"sliding_attention"}:
        raise LlmarchError("deepseek_v4: compressed attention layers (compressed_sparse_attention, "
                           "heavily_compressed_attention) are not implemented; only sliding_attention layers are")


def _hash_layers(hf: dict, n: int) -> int:
    types = hf.get("mlp_layer_types")
    if types is None:
        return min(n, int(hf.get("num_hash_layers", 3)))
    k = types.index("moe") if "moe" in types else len(types)
    if set(types) - {"hash_moe", "moe"} or "hash_moe" in types[k:]:
        raise LlmarchError(f"deepseek_v4: mlp_layer_types {types} are not some hash_moe layers, then moe ones")
    return min(k, n)


def to_config(hf: dict) -> ModelConfig:
    n, d = int(hf["num_hidden_layers"]), int(hf["hidden_size"])
    _layer_types(hf, n)
    if hf.get("hidden_act", "silu") != "silu" or hf.get("attention_bias") or hf.get("mlp_bias"):
        raise LlmarchError("deepseek_v4: only hidden_act silu without attention or MLP biases is supported")
    if int(hf.get("num_key_value_heads", 1)) != 1 or hf.get("norm_topk_prob", True) is False:
        raise LlmarchError("deepseek_v4: num_key_value_heads must be 1 and norm_topk_prob true (transformers' V4 "
                           "renormalises whatever it says)")
    scoring = hf.get("scoring_func", "sqrtsoftplus")
    if scoring not in SCORINGS:
        raise LlmarchError(f"deepseek_v4: scoring_func {scoring!r} is not one of {', '.join(SCORINGS)}")
    main = (hf.get("rope_parameters") or {}).get("main") or {}
    if main.get("rope_type", "default") != "default":
        raise LlmarchError(f"deepseek_v4: rope type {main['rope_type']!r} on sliding layers is not supported")
    D = int(hf.get("head_dim", 512))
    fraction = hf.get("partial_rotary_factor") or (hf["qk_rope_head_dim"] / D if "qk_rope_head_dim" in hf else 0.125)
    eos = hf.get("eos_token_id")
    expert = int(hf.get("moe_intermediate_size", 2048))
    return ModelConfig(
        name=hf.get("_name_or_path") or "deepseek_v4", hf_model_type="deepseek_v4", vocab_size=int(hf["vocab_size"]),
        d_model=d, n_layers=n, n_heads=int(hf["num_attention_heads"]), n_kv_heads=1, head_dim=D, mixer="shared_kv",
        q_lora_rank=int(hf.get("q_lora_rank", 1024)), o_groups=int(hf.get("o_groups", 8)),
        o_lora_rank=int(hf.get("o_lora_rank", 1024)), attention="sliding_window",
        sliding_window=int(hf.get("sliding_window", 128)), attn_sinks=True, positions="rope",
        rope_theta=float(main.get("rope_theta", hf.get("rope_theta", 10000.0))), rope_fraction=float(fraction),
        norm="rmsnorm", norm_eps=float(hf.get("rms_norm_eps", 1e-6)), bias=False, norm_bias=False,
        ffn="swiglu_limited", swiglu_limit=float(hf.get("swiglu_limit", 10.0)), ffn_hidden=expert,
        n_experts=int(hf.get("n_routed_experts", 256)), experts_per_token=int(hf.get("num_experts_per_tok", 6)),
        expert_hidden=expert, n_shared_experts=int(hf.get("n_shared_experts", 1)), router_scoring=scoring,
        expert_bias=True, router_renormalize=True, router_scale=float(hf.get("routed_scaling_factor", 1.5)),
        router_hash_layers=_hash_layers(hf, n), hyper_connection="mhc", hc_streams=int(hf.get("hc_mult", 4)),
        hc_sinkhorn_iters=int(hf.get("hc_sinkhorn_iters", 20)), hc_eps=float(hf.get("hc_eps", 1e-6)),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        context_length=int(hf.get("max_position_embeddings", 1048576)), eos_id=eos if isinstance(eos, int) else None)


def from_config(cfg: ModelConfig) -> dict:
    if cfg.mixer != "shared_kv" or cfg.layer_types is not None or cfg.attention != "sliding_window" \
            or not cfg.attn_sinks or cfg.hyper_connection != "mhc" or cfg.hc_post_gain != 2.0 \
            or cfg.ffn != "swiglu_limited" or not cfg.n_experts or cfg.moe_period != 1 or cfg.moe_dense_first \
            or not cfg.expert_bias or not cfg.router_renormalize or cfg.router_groups != 1 \
            or cfg.shared_hidden != cfg.n_shared_experts * cfg.expert_hidden or cfg.shared_expert_gate \
            or cfg.capacity_factor is not None or cfg.expert_capacity is not None or cfg.norm != "rmsnorm" \
            or cfg.rope_scaling != "none" or cfg.router_scoring not in SCORINGS:
        raise LlmarchError("model_type deepseek_v4 needs mixer 'shared_kv' with sliding windows and sinks on every "
                           "layer, mhc hyper-connections of gain 2, RMSNorm, unscaled RoPE and mixtures of "
                           "swiglu_limited experts on every layer with an expert bias and renormalised weights")
    hashes = cfg.router_hash_layers
    out = dict(model_type="deepseek_v4", architectures=["DeepseekV4ForCausalLM"], vocab_size=cfg.vocab_size,
               hidden_size=cfg.d_model, moe_intermediate_size=cfg.expert_hidden, num_hidden_layers=cfg.n_layers,
               num_attention_heads=cfg.n_heads, num_key_value_heads=1, head_dim=cfg.head_dim,
               q_lora_rank=cfg.q_lora_rank, num_experts_per_tok=cfg.experts_per_token, n_routed_experts=cfg.n_experts,
               n_shared_experts=cfg.n_shared_experts, scoring_func=cfg.router_scoring, norm_topk_prob=True,
               routed_scaling_factor=cfg.router_scale, max_position_embeddings=cfg.context_length,
               rope_theta=cfg.rope_theta, partial_rotary_factor=cfg.rope_fraction,
               layer_types=["sliding_attention"] * cfg.n_layers,
               mlp_layer_types=["hash_moe"] * hashes + ["moe"] * (cfg.n_layers - hashes), hc_mult=cfg.hc_streams,
               hc_sinkhorn_iters=cfg.hc_sinkhorn_iters, hc_eps=cfg.hc_eps, swiglu_limit=cfg.swiglu_limit,
               sliding_window=cfg.sliding_window, o_groups=cfg.o_groups,
               o_lora_rank=cfg.o_lora_rank or cfg.d_model // cfg.o_groups,
               rms_norm_eps=cfg.norm_eps, tie_word_embeddings=cfg.tie_embeddings, hidden_act="silu")
    if cfg.eos_id is not None:
        out["eos_token_id"] = cfg.eos_id
    return out


FAMILIES.register("deepseek_v4")(Family(RULES, to_config, from_config, (r"rotary_emb\.", r"^mtp\."),
                                        canonical=canonical, stacked_experts=STACKED))
