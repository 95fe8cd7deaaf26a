"""HY-V4 (`model_type: hy_v4`; Tencent Hunyuan, Hy4-preview): GLM-5's latent attention with DeepSeek Sparse Attention
(glm_moe_dsa.py: interleaved RoPE, a lightning indexer per `full` layer, `shared` layers reusing the last selection)
with a sigmoid output gate per head (`linear_gate`, attn_output_gate) and learned sinks (`learnable_sink_param`,
attn_sinks), each block between independent hyper-connections (hyper_connection 'ihc', hc_mult streams, post gain
hc_magnitude: layers/hyper.py), DeepSeek-V3's router with routed experts clamped at swiglu_limit (expert_ffn
'swiglu_limited') beside unclamped shared experts and dense first layers (mlp_layer_types). Its indexer rotates the
last qk_rope_head_dim dims of its q and k in interleaved pairs, with its key LayerNorm at rms_norm_eps: the import
moves them first, in halves (layout hy_index), as ours rotates them. Multi-token-prediction layers are not loaded."""
from __future__ import annotations

import torch

from ..config import ModelConfig
from ..errors import LlmarchError
from .deepseek_v2 import IGNORE, _interleaved
from .deepseek_v32 import dsa_config, dsa_hf, dsa_rules
from .glm_moe_dsa import indexer_types
from .hf import FAMILIES, Family
from .mapping import LAYOUTS, Rule

_L = "model.layers.{i}."
_B = "blocks.{i}."


def _index_rows(t: torch.Tensor, cfg, to_ours: bool) -> torch.Tensor:
    """Indexer rows per head [no RoPE (D - R) | RoPE (R, interleaved)] to ours [RoPE (R, halves) | no RoPE]."""
    D, R = cfg.dsa_head_dim, cfg.head_dim
    order = torch.cat((D - R + _interleaved(R, True), torch.arange(D - R)))
    return t.reshape(-1, D, *t.shape[1:])[:, order if to_ours else order.argsort()].reshape(t.shape)


LAYOUTS["hy_index"] = (lambda t, cfg: _index_rows(t, cfg, True), lambda t, cfg: _index_rows(t, cfg, False),
                       lambda s: s)


def _hc(hf: str, ours: str, stem: str = "hc_") -> list[Rule]:
    return [Rule.of(f"{hf}{stem}{a}", f"{ours}.{b}") for a, b in (("fn", "fn"), ("base", "bias"), ("scale", "scale"))]


RULES = [Rule(tuple(n.replace(".gate_proj.", ".linear_gate.") for n in r.hf), r.ours, r.layout)
         for r in dsa_rules("hy_index") if "experts.{e}" not in r.hf[0]] + [
    Rule.of(_L + "mlp.experts.gate_up_proj", _B + "mlp.experts.gate_up"),
    Rule.of(_L + "mlp.experts.down_proj", _B + "mlp.experts.down"),
    Rule.of(_L + "self_attn.linear_gate.weight", _B + "attn.gate_proj.weight"),
    Rule.of(_L + "self_attn.learnable_sink_param", _B + "attn.sinks"),
    *_hc(_L + "hc_pre.hc_attn_layer.", _B + "attn_hc"),
    *_hc(_L + "hc_pre.hc_mlp_layer.", _B + "ffn_hc"),
    *_hc("model.hc_pre.hc_head.hc_head_", "hc_head", ""),
]


def to_config(hf: dict) -> ModelConfig:
    if float(hf.get("swiglu_limit", 10.0)) <= 0:
        raise LlmarchError("hy_v4: swiglu_limit <= 0 (no clamp) is not supported")
    types = indexer_types(hf)
    shared = dict(layer_types=types, layer_overrides={"shared": {"dsa_shared": True}}) if "shared" in types else {}
    eps = float(hf.get("rms_norm_eps", 1e-5))
    return dsa_config(hf, 16, **shared).replace(
        expert_ffn="swiglu_limited", swiglu_limit=float(hf.get("swiglu_limit", 10.0)), attn_sinks=True,
        attn_output_gate=True, hyper_connection="ihc", hc_streams=int(hf.get("hc_mult", 4)),
        hc_post_gain=float(hf.get("hc_magnitude", 2.0)), hc_eps=float(hf.get("hc_eps", 1e-6)), dsa_key_norm_eps=eps)


def from_config(cfg: ModelConfig) -> dict:
    if cfg.hyper_connection != "ihc" or not cfg.attn_sinks or not cfg.attn_output_gate \
            or (cfg.n_experts and cfg.expert_ffn != "swiglu_limited") or cfg.router_groups != 1 \
            or cfg.dsa_key_norm_eps != cfg.norm_eps:
        raise LlmarchError("model_type hy_v4 needs ihc hyper-connections, attention sinks and output gates, "
                           "swiglu_limited experts, ungrouped routing and the indexer key norm at norm_eps")
    types = ["shared" if cfg.for_layer(i).dsa_shared else "full" for i in range(cfg.n_layers)]
    out = dsa_hf(cfg, architectures=["HYV4ForCausalLM"], indexer_types=types,
                 mlp_layer_types=["sparse" if cfg.is_moe_layer(i) else "dense" for i in range(cfg.n_layers)],
                 hc_mult=cfg.hc_streams, hc_magnitude=cfg.hc_post_gain, hc_eps=cfg.hc_eps,
                 swiglu_limit=cfg.swiglu_limit, pad_token_id=None, bos_token_id=None)  # ids past a tiny vocabulary
    for key in ("first_k_dense_replace",):
        out.pop(key, None)
    return out


FAMILIES.register("hy_v4")(Family(RULES, to_config, from_config, IGNORE, mtp=True))
