"""DeepSeek-V2 (`model_type: deepseek_v2`; DeepSeek-AI 2024, arXiv 2405.04434): multi-head latent attention
(mixer "mla", layers/mla.py) and DeepSeekMoE FFNs: fine-grained routed SwiGLU experts chosen by softmax scores
(greedy, or group-limited: topk_method group_limited_greedy), weights not renormalised but times
routed_scaling_factor, plus shared experts; the first first_k_dense_replace FFNs dense (moe_dense_first).
The module also holds what deepseek_v3.py shares.

DeepSeek lays each head's RoPE dims out in interleaved pairs (x0, x1), (x2, x3), ... (V2 always, V3 with
rope_interleave); ours pair x_i with x_{i + R/2}. As q.k^R only needs q and k permuted alike, the import
permutes the RoPE rows of the query projection and of kv_a_proj_with_mqa (layouts "mla_q", "mla_kv_a") and
the export permutes them back, so the model itself has one RoPE."""
from __future__ import annotations

import torch

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import rope_fields, rope_parameters
from .mapping import LAYOUTS, Rule

_A = "model.layers.{i}.self_attn."
_M = "model.layers.{i}.mlp."
_B = "blocks.{i}."


def _interleaved(R: int, to_ours: bool) -> torch.Tensor:
    """Row order taking DeepSeek's interleaved RoPE dims to half-split ones (or back)."""
    order = torch.cat((torch.arange(0, R, 2), torch.arange(1, R, 2)))
    return order if to_ours else order.argsort()


def _q_rows(t: torch.Tensor, cfg, to_ours: bool) -> torch.Tensor:
    """Query rows, per head [nope (N), rope (R)]: the rope rows of every head reordered."""
    N, R = cfg.qk_nope_head_dim, cfg.head_dim
    heads = t.reshape(cfg.n_heads, N + R, *t.shape[1:])
    rope = heads[:, N:][:, _interleaved(R, to_ours)]
    return torch.cat((heads[:, :N], rope), dim=1).reshape(t.shape)


def _kv_a_rows(t: torch.Tensor, cfg, to_ours: bool) -> torch.Tensor:
    """kv_a_proj_with_mqa rows [latent (r), rope key (R)]: the rope key's rows reordered."""
    r = cfg.kv_lora_rank
    return torch.cat((t[:r], t[r:][_interleaved(cfg.head_dim, to_ours)]))


LAYOUTS["mla_q"] = (lambda t, cfg: _q_rows(t, cfg, True), lambda t, cfg: _q_rows(t, cfg, False), lambda s: s)
LAYOUTS["mla_kv_a"] = (lambda t, cfg: _kv_a_rows(t, cfg, True), lambda t, cfg: _kv_a_rows(t, cfg, False),
                       lambda s: s)


def moe_rules(bias: str = "gate.e_score_correction_bias", bias_layout: str = "same", router: str = "gate.weight",
              shared: str = "shared_experts") -> list[Rule]:
    """DeepSeekMoE's mixture under `mlp.` (DeepSeek-V2/V3, GLM-4.5, ERNIE 4.5; AFMoE and HY V3 under other names):
    the router (`router`), its expert bias (`bias`, stored as `bias_layout`), each routed expert's SwiGLU stacked, the
    shared experts (`shared`) fused."""
    return [
        Rule.of(_M + router, _B + "mlp.router.weight"),
        Rule.of(_M + bias, _B + "mlp.router.expert_bias", bias_layout),
        Rule.of((_M + "experts.{e}.gate_proj.weight", _M + "experts.{e}.up_proj.weight"), _B + "mlp.experts.gate_up"),
        Rule.of(_M + "experts.{e}.down_proj.weight", _B + "mlp.experts.down"),
        Rule.of((_M + f"{shared}.gate_proj.weight", _M + f"{shared}.up_proj.weight"), _B + "mlp.shared.gate_up.weight"),
        Rule.of(_M + f"{shared}.down_proj.weight", _B + "mlp.shared.down.weight"),
    ]


def rules(interleaved: bool) -> list[Rule]:
    q, kv_a = ("mla_q", "mla_kv_a") if interleaved else ("same", "same")
    return [
        Rule.of("model.embed_tokens.weight", "embed.weight"),
        Rule.of(_A + "q_proj.weight", _B + "attn.q_proj.weight", q),
        *[Rule.of(_A + f"q_a_proj.{w}", _B + f"attn.q_a_proj.{w}") for w in ("weight", "bias")],
        Rule.of(_A + "q_a_layernorm.weight", _B + "attn.q_a_norm.weight"),
        Rule.of(_A + "q_b_proj.weight", _B + "attn.q_b_proj.weight", q),
        *[Rule.of(_A + f"kv_a_proj_with_mqa.{w}", _B + f"attn.kv_a_proj.{w}", kv_a) for w in ("weight", "bias")],
        Rule.of(_A + "kv_a_layernorm.weight", _B + "attn.kv_a_norm.weight"),
        Rule.of(_A + "kv_b_proj.weight", _B + "attn.kv_b_proj.weight"),
        *[Rule.of(_A + f"o_proj.{w}", _B + f"attn.o_proj.{w}") for w in ("weight", "bias")],
        Rule.of((_M + "gate_proj.weight", _M + "up_proj.weight"), _B + "mlp.gate_up.weight"),
        Rule.of(_M + "down_proj.weight", _B + "mlp.down.weight"),
        *moe_rules(),
        Rule.of("model.layers.{i}.input_layernorm.weight", _B + "ln1.weight"),
        Rule.of("model.layers.{i}.post_attention_layernorm.weight", _B + "ln2.weight"),
        Rule.of("model.norm.weight", "ln_final.weight"),
        Rule.of("lm_head.weight", "lm_head.weight"),
    ]


IGNORE = (r"rotary_emb\.inv_freq$",)


def dense_first(hf: dict) -> int:
    """The dense layers before the mixtures: mlp_layer_types' leading `dense` (GLM-4.7-Flash, EXAONE MoE,
    Cohere2-MoE), else first_k_dense_replace (default 1); first_dense inverted."""
    types = hf.get("mlp_layer_types")
    if not types:
        return int(hf.get("first_k_dense_replace", 1))
    k = types.index("sparse") if "sparse" in types else len(types)
    if set(types) - {"dense", "sparse"} or "dense" in types[k:]:
        raise LlmarchError(f"{hf['model_type']}: mlp_layer_types {types} are not some dense layers, then sparse "
                           "ones")
    return k


def first_dense(cfg: ModelConfig) -> int:
    """first_k_dense_replace of a config, or an error if its MoE layers are not all the ones after the first k."""
    moe = [cfg.is_moe_layer(i) for i in range(cfg.n_layers)]
    k = moe.index(True) if any(moe) else cfg.n_layers
    if not all(moe[k:]):
        raise LlmarchError(f"model_type {cfg.hf_model_type} needs every FFN after the first k dense ones a mixture")
    return k


def moe_fields(hf: dict, dense_first: int) -> dict:
    """DeepSeekMoE's config.json fields (DeepSeek-V2/V3, GLM-4.5): the routed and shared experts, their scale,
    the dense first layers (first_k_dense_replace, else `dense_first`, the family's default)."""
    return dict(n_experts=int(hf["n_routed_experts"]), experts_per_token=int(hf["num_experts_per_tok"]),
                expert_hidden=int(hf["moe_intermediate_size"]), n_shared_experts=int(hf.get("n_shared_experts") or 0),
                router_scale=float(hf.get("routed_scaling_factor", 1.0)),
                moe_dense_first=int(hf.get("first_k_dense_replace", dense_first) or 0))


def v3_router_fields(hf: dict) -> dict:
    """DeepSeek-V3's router (§2.1.2; GLM-4.5's too): sigmoid scores, an expert bias for the choice, groups, the
    chosen scores renormalised where norm_topk_prob."""
    return dict(router_scoring="sigmoid", expert_bias=True, router_renormalize=bool(hf.get("norm_topk_prob", True)),
                router_groups=int(hf.get("n_group") or 1), router_topk_groups=int(hf.get("topk_group") or 1))


def moe_hf(cfg: ModelConfig) -> dict:
    """moe_fields inverted, with the router's groups."""
    return dict(n_routed_experts=cfg.n_experts, num_experts_per_tok=cfg.experts_per_token,
                moe_intermediate_size=cfg.expert_hidden, n_shared_experts=cfg.n_shared_experts,
                routed_scaling_factor=cfg.router_scale, first_k_dense_replace=first_dense(cfg),
                n_group=cfg.router_groups, topk_group=cfg.router_topk_groups)


def deepseek_config(hf: dict, **moe) -> ModelConfig:
    """What V2 and V3 configs share: the latent attention, the dense layers, the shared experts."""
    if hf.get("hidden_act", "silu") != "silu" or hf.get("mlp_bias"):
        raise LlmarchError(f"{hf['model_type']}: only hidden_act silu without mlp_bias is supported")
    d, heads, L = hf["hidden_size"], hf["num_attention_heads"], hf["num_hidden_layers"]
    rope = rope_fields(hf)
    moe = {**moe, **moe_fields(hf, 0)} if int(hf.get("n_routed_experts") or 0) else {}
    eos = hf.get("eos_token_id")
    return ModelConfig(
        name=hf.get("_name_or_path") or hf["model_type"], hf_model_type=hf["model_type"], vocab_size=hf["vocab_size"],
        d_model=d, n_layers=L, n_heads=heads, n_kv_heads=heads, mixer="mla", head_dim=int(hf["qk_rope_head_dim"]),
        q_lora_rank=hf.get("q_lora_rank"), kv_lora_rank=int(hf["kv_lora_rank"]),
        qk_nope_head_dim=int(hf["qk_nope_head_dim"]), v_head_dim=int(hf["v_head_dim"]), ffn="swiglu",
        ffn_hidden=hf["intermediate_size"], norm="rmsnorm", norm_eps=hf.get("rms_norm_eps", 1e-6), positions="rope",
        bias=False, qkv_bias=bool(hf.get("attention_bias", False)), norm_bias=False,
        tie_embeddings=hf.get("tie_word_embeddings", False), context_length=hf.get("max_position_embeddings", 2048),
        eos_id=eos if isinstance(eos, int) else None, **rope, **moe)


def deepseek_hf(cfg: ModelConfig, **extra) -> dict:
    if cfg.mixer != "mla" or cfg.attn_period or cfg.ffn != "swiglu" or cfg.bias or cfg.capacity_factor is not None \
            or cfg.expert_capacity is not None or cfg.norm != "rmsnorm" or cfg.positions != "rope":
        raise LlmarchError(f"model_type {cfg.hf_model_type} needs mixer 'mla' in every layer, RoPE, RMSNorm and "
                           "bias-free SwiGLU FFNs with uncapped experts")
    out = dict(model_type=cfg.hf_model_type, vocab_size=cfg.vocab_size, hidden_size=cfg.d_model,
               intermediate_size=cfg.ffn_hidden, num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
               num_key_value_heads=cfg.n_heads, hidden_act="silu", max_position_embeddings=cfg.context_length,
               rms_norm_eps=cfg.norm_eps, rope_parameters=rope_parameters(cfg), tie_word_embeddings=cfg.tie_embeddings,
               attention_bias=cfg.qkv_bias, q_lora_rank=cfg.q_lora_rank, kv_lora_rank=cfg.kv_lora_rank,
               qk_rope_head_dim=cfg.head_dim, qk_nope_head_dim=cfg.qk_nope_head_dim, v_head_dim=cfg.v_head_dim)
    if cfg.n_experts:
        out.update(moe_hf(cfg))
    else:
        out.update(n_routed_experts=0, first_k_dense_replace=cfg.n_layers)
    if cfg.eos_id is not None:
        out["eos_token_id"] = cfg.eos_id
    out.update(extra)
    return out


def to_config(hf: dict) -> ModelConfig:
    method = hf.get("topk_method") or "greedy"
    if method not in ("greedy", "group_limited_greedy"):
        raise LlmarchError(f"deepseek_v2: topk_method {method!r} is not supported (greedy, group_limited_greedy)")
    grouped = method == "group_limited_greedy"
    # transformers' V2 router never renormalises the top-k weights (norm_topk_prob is read by V3 only)
    return deepseek_config(hf, router_scoring="softmax", router_renormalize=False,
                           router_groups=int(hf["n_group"]) if grouped else 1,
                           router_topk_groups=int(hf["topk_group"]) if grouped else 1)


def from_config(cfg: ModelConfig) -> dict:
    if cfg.n_experts and (cfg.router_scoring != "softmax" or cfg.router_renormalize or cfg.expert_bias):
        raise LlmarchError("model_type deepseek_v2 routes by softmax scores, without renormalising them or an "
                           "expert bias")
    method = "group_limited_greedy" if cfg.router_groups > 1 else "greedy"
    return deepseek_hf(cfg, architectures=["DeepseekV2ForCausalLM"], topk_method=method, norm_topk_prob=False)


FAMILIES.register("deepseek_v2")(Family(rules(interleaved=True), to_config, from_config, IGNORE))
