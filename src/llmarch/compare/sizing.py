"""Sizes at equal compute. Every entry is its preset at one width (d_model, with its heads, FFN, experts and
latent ranks scaled in proportion: the per-head widths stay), on one vocabulary and context; its depth is the
one whose training FLOPs per token (analysis/accounting.py: 6N + the attention term) come nearest the
reference's (GPT at the reference depth), and its training tokens are the budget divided by its FLOPs per
token, so every run spends the same compute to within one step. Depth is the knob because every family has
it and it keeps each block as its paper drew it: a Mamba block has no FFN and so gets about twice the blocks
(as Gu & Dao 2023, §4.2, compare at equal parameters), a mixture of experts the depth of its dense twin."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..analysis.accounting import model_facts
from ..config import ModelConfig
from ..errors import LlmarchError
from ..presets import resolve
from .entries import BY_KEY, REFERENCE, Entry

# the counts that are widths: scaled with d_model (None where the config derives them); the heads grouped over
# them (n_kv_heads, delta_value_heads) follow, below
_WIDTHS = ("n_heads", "ffn_hidden", "expert_hidden", "kv_lora_rank", "q_lora_rank", "delta_heads")


@dataclass(frozen=True)
class Shape:
    d_model: int = 128  # width of every entry
    depth: int = 4  # the reference's (GPT's) blocks
    vocab_size: int = 2048  # the BPE vocabulary, shared
    context: int = 256  # training sequence length
    batch_size: int = 16  # sequences per step


def at_width(cfg: ModelConfig, d_model: int, vocab_size: int, context: int) -> ModelConfig:
    """cfg at width d_model: heads, FFN, experts and latent ranks scaled by d_model / cfg.d_model."""
    ratio = d_model / cfg.d_model
    over = dict(d_model=d_model, vocab_size=vocab_size, context_length=context)
    for name in _WIDTHS:
        value = getattr(cfg, name)
        if value is not None and name not in cfg._derived:
            over[name] = max(1, round(value * ratio))
    if "n_kv_heads" not in cfg._derived:  # the query heads per KV head kept, so the heads still group evenly
        over["n_kv_heads"] = max(1, over["n_heads"] // (cfg.n_heads // cfg.n_kv_heads))
    if cfg.delta_value_heads is not None:  # value heads per key head kept (Gated DeltaNet; key heads: n_heads)
        keys_before, keys = cfg.delta_heads or cfg.n_heads, over.get("delta_heads") or over["n_heads"]
        over["delta_value_heads"] = keys * (cfg.delta_value_heads // keys_before)
    if "head_dim" not in cfg._derived:  # a given head width stays; derived ones follow d_model / n_heads
        over["head_dim"] = cfg.head_dim
    if cfg.mixer == "mamba2":  # Mamba-2's heads of ssm_head_dim channels must tile the inner width
        over["ssm_head_dim"] = math.gcd(cfg.ssm_head_dim, cfg.ssm_expand * d_model)
    return cfg.replace(**over)


def with_depth(cfg: ModelConfig, n_layers: int) -> ModelConfig:
    over = dict(n_layers=n_layers)
    if cfg.is_encoder_decoder:
        over["n_decoder_layers"] = n_layers
    return cfg.replace(**over)


def base_config(entry: Entry, shape: Shape) -> ModelConfig:
    cfg = resolve(entry.preset, **entry.overrides)
    return at_width(cfg, shape.d_model, shape.vocab_size, shape.context).replace(name=entry.key)


def flops_per_token(cfg: ModelConfig) -> int:
    return model_facts(cfg)["flops_per_token"]


def reference_flops(shape: Shape) -> int:
    return flops_per_token(with_depth(base_config(BY_KEY[REFERENCE], shape), shape.depth))


def sized(entry: Entry, shape: Shape, target: int) -> ModelConfig:
    """The entry at the depth whose FLOPs per token are nearest `target` (ties: the shallower)."""
    cfg = base_config(entry, shape)
    best, gap = None, math.inf
    for depth in range(1, 4 * shape.depth + 1):
        try:
            candidate = with_depth(cfg, depth)
            f = flops_per_token(candidate)
        except LlmarchError:  # a depth its layer pattern cannot take (a hybrid's attention period)
            continue
        if abs(math.log(f / target)) < gap:
            best, gap = candidate, abs(math.log(f / target))
        if f > target:  # FLOPs grow with depth: deeper is only further away
            break
    if best is None:
        raise LlmarchError(f"{entry.key}: no depth up to {4 * shape.depth} builds at d_model {shape.d_model}")
    return best


def steps_for(cfg: ModelConfig, budget: float, shape: Shape) -> int:
    """Optimizer steps that spend `budget` training FLOPs (at least 1)."""
    per_step = flops_per_token(cfg) * shape.batch_size * shape.context
    return max(1, round(budget / per_step))
