"""DeBERTa v1 (`model_type: deberta`; He et al. 2021): DeBERTa-v2's network (deberta_v2.py) in its first form:
relative embeddings without buckets or a norm (offsets clamped to [-k, k - 1], k = max_relative_positions, as
transformers' dynamic attention span amounts to), projections of their own (pos_proj without a bias: c2p;
pos_q_proj: p2c), no side convolution, and q, k, v fused in `in_proj` per head ([q_h k_h v_h] rows for each head
h, the neox_qkv layout) without a bias, beside q_bias and v_bias: keys have none, so ours is zero and a model whose
key bias is not (trained in llmarch) is refused on export. Refused: talking_head (Shazeer et al. 2020's mixing
of heads) and what deberta_v2.py refuses."""
from __future__ import annotations

import torch

from ..config import ModelConfig
from ..errors import LlmarchError
from .deberta_v2 import IGNORE, _L, from_config as v2_hf, heads, positions_rules, shared_rules
from .deberta_v2 import needs as v2_needs, to_config as v2_config
from .hf import FAMILIES, Family
from .mapping import JOINS, Rule

_V2_ONLY = ("position_buckets", "norm_rel_ebd", "share_att_key", "conv_kernel_size", "conv_act", "conv_groups",
            "attention_head_size")


def _join_qv(parts: list[torch.Tensor], cfg) -> torch.Tensor:
    """q_bias, v_bias -> our q|k|v bias, the keys' zero."""
    q, v = parts
    return torch.cat([q, torch.zeros_like(q), v])


def _split_qv(t: torch.Tensor, cfg) -> list[torch.Tensor]:
    q, k, v = t.chunk(3)
    if k.device.type != "meta" and bool(k.any()):
        raise LlmarchError("model_type deberta has no key bias (q_bias and v_bias only), and this model's is not zero")
    return [q, v]


JOINS["deberta_qv_bias"] = (_join_qv, _split_qv)
_S = _L + "attention.self."
RULES = shared_rules([
    Rule.of(_S + "in_proj.weight", "blocks.{i}.attn.qkv_proj.weight", "neox_qkv"),
    Rule.of((_S + "q_bias", _S + "v_bias"), "blocks.{i}.attn.qkv_proj.bias", "deberta_qv_bias"),
    Rule.of(_S + "pos_proj.weight", "blocks.{i}.attn.pos_key_proj.weight"),
    *[Rule.of(_S + f"pos_q_proj.{w}", f"blocks.{{i}}.attn.pos_query_proj.{w}") for w in ("weight", "bias")]])


def to_config(hf: dict) -> ModelConfig:
    if hf.get("talking_head", False):
        raise LlmarchError("DeBERTa with talking_head is not supported")
    cfg = v2_config({k: v for k, v in hf.items() if k not in _V2_ONLY})
    extra = dict(disentangled_shared_proj=False, disentangled_key_bias=False) if cfg.attention == "disentangled" else {}
    return cfg.replace(name=hf.get("_name_or_path") or "deberta", hf_model_type="deberta", **extra)


def needs(cfg: ModelConfig) -> str | None:
    """Family.needs: deberta-v2's, and what v1's layout lacks."""
    own = not (cfg.relative_log_buckets or cfg.relative_norm or cfg.disentangled_shared_proj
               or cfg.disentangled_key_bias)
    if cfg.positions == "relative_embeddings" and not own or cfg.side_conv or not cfg.qkv_bias \
            or cfg.head_dim * cfg.n_heads != cfg.d_model:
        return "relative embeddings without buckets or a norm, projections of their own (pos_key_proj without a " \
            "bias), q and v biases, no side_conv, and head_dim * n_heads = d_model"
    return v2_needs(cfg)


def from_config(cfg: ModelConfig) -> dict:
    out = {k: v for k, v in v2_hf(cfg).items() if k not in _V2_ONLY}
    return {**out, "model_type": "deberta", "architectures": ["DebertaForMaskedLM"]}


FAMILIES.register("deberta")(Family(RULES, to_config, from_config, IGNORE, heads=heads("Deberta"),
                                    more_rules=positions_rules, base_prefix="deberta.", needs=needs))
