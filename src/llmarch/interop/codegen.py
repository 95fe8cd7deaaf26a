"""CodeGen (`model_type: codegen`; Nijkamp et al. 2023, "CodeGen: An Open Large Language Model for Code with
Multi-Turn Program Synthesis"; transformers' CodeGenForCausalLM): GPT-J's block (gptj.py: one LayerNorm before
parallel attention and MLP, RoPE on the first rotary_dim dims of each head in adjacent pairs, no q, k, v or output
biases, a tanh-GELU MLP and an untied LM head with biases) whose q, k, v are one `qkv_proj` laid out for the
model-parallel shards it was trained on: its 3d rows are mp_num = 4 blocks, each [q | v | k] of d / 4 rows (note
the order), the queries of block m being rows m d/4 .. (m + 1) d/4 of the whole query projection. Layout
`codegen_qkv` splits them into our [q | k | v] (the q and k rows then reordered from adjacent pairs to halves, as
gptj.py's) and fuses them back exactly."""
from __future__ import annotations

import torch

from ..config import ModelConfig
from ..errors import LlmarchError
from . import gptj
from .hf import FAMILIES, Family
from .mapping import LAYOUTS, Rule

MP_NUM = 4  # transformers' CodeGenAttention.mp_num, the same for every released size
_PAIRS_TO_OURS, _PAIRS_TO_HF, _ = LAYOUTS["rope_pairs"]  # adjacent-pair RoPE rows <-> halves, per head


def _to_ours(t: torch.Tensor, cfg) -> torch.Tensor:
    """qkv_proj rows [m: q_m v_m k_m] for m < 4 -> ours [q | k | v], q and k rows in halves per head."""
    blocks = t.reshape(MP_NUM, 3, -1, *t.shape[1:])  # (4, 3, d/4, ...)
    q, v, k = (blocks[:, j].flatten(0, 1) for j in range(3))
    return torch.cat([_PAIRS_TO_OURS(q, cfg), _PAIRS_TO_OURS(k, cfg), v])


def _to_hf(t: torch.Tensor, cfg) -> torch.Tensor:
    q, k, v = t.chunk(3)
    parts = [_PAIRS_TO_HF(q, cfg), v, _PAIRS_TO_HF(k, cfg)]
    return torch.stack([p.reshape(MP_NUM, -1, *t.shape[1:]) for p in parts], dim=1).flatten(0, 2)


LAYOUTS["codegen_qkv"] = (_to_ours, _to_hf, lambda s: s)

_L = "transformer.h.{i}."
RULES = [Rule.of(_L + "attn.qkv_proj.weight", "blocks.{i}.attn.qkv_proj.weight", "codegen_qkv")] + [
    r for r in gptj.RULES if ".qkv_proj." not in r.ours]


def to_config(hf: dict) -> ModelConfig:
    d, heads, rotary = hf["n_embd"], hf["n_head"], hf.get("rotary_dim")
    if rotary is None:  # transformers then builds sin/cos tables of d_model dims for heads of d / heads
        raise LlmarchError("codegen: rotary_dim must be given (transformers' CodeGen fails without one)")
    if d % MP_NUM or d % heads:
        raise LlmarchError(f"codegen: n_embd {d} must be a multiple of 4 (qkv_proj's shards) and of n_head {heads}")
    return gptj.to_config(hf).replace(name=hf.get("_name_or_path") or "codegen", hf_model_type="codegen")


def from_config(cfg: ModelConfig) -> dict:
    if cfg.d_model % MP_NUM:
        raise LlmarchError(f"model_type codegen needs d_model a multiple of 4 (qkv_proj's shards), not {cfg.d_model}")
    if cfg.head_dim * cfg.n_heads != cfg.d_model:
        raise LlmarchError("model_type codegen needs head_dim = d_model / n_heads")
    out = gptj.from_config(cfg)
    return dict(out, model_type="codegen", architectures=["CodeGenForCausalLM"], n_ctx=cfg.context_length)


FAMILIES.register("codegen")(Family(RULES, to_config, from_config, ignore=(r"\.attn\.causal_mask$",
                                                                           r"\.attn\.(masked_)?bias$",
                                                                           r"embed_positions$")))
