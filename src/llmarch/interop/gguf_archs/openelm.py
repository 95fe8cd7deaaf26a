"""Apple's OpenELM (GGUF `openelm`, llmarch's openelm), as convert_hf_to_gguf.py's OpenELMModel writes it: each layer's
query heads, key/value heads and FFN width as per-layer arrays (`attention.head_count`, `head_count_kv`,
`feed_forward_length`) of one head_dim (`key_length`); q, k, v fused (`attn_qkv`, all q, all k, all v: llama.cpp's
openelm graph splits it so, and rotates halves, so nothing is permuted), the per-head q/k RMSNorms (`attn_q_norm`,
`attn_k_norm`, head_dim wide), the fused gate|up `ffn.proj_1` split into `ffn_gate` and `ffn_up`; RMSNorm's epsilon
1e-6; no `output` (llama.cpp's openelm has none: the head is the embedding, and GGUF out refuses an untied one)."""
from __future__ import annotations

import math

import torch

from ...errors import LlmarchError
from ..openelm import EPS, make_divisible
from .arch import Arch, Meta


def _per_layer(value, n: int) -> list[int]:
    return [int(v) for v in value] if isinstance(value, list) else [int(value)] * n


def _openelm(hf: dict, meta: Meta) -> dict:
    n, d = hf["num_hidden_layers"], hf["hidden_size"]
    widths = _per_layer(hf["intermediate_size"], n)
    eps = math.isclose(hf["rms_norm_eps"], EPS, rel_tol=1e-6)  # float32 in the file
    if hf.get("rope_scaling") or not hf["tie_word_embeddings"] or not eps:
        raise LlmarchError(f"{meta.path}: openelm with RoPE scaling, an output matrix or a norm epsilon other than "
                           f"{EPS} is not supported")
    return {"model_type": "openelm", "_name_or_path": hf["_name_or_path"], "vocab_size": hf["vocab_size"],
            "eos_token_id": hf["eos_token_id"], "model_dim": d, "num_transformer_layers": n,
            "head_dim": hf["head_dim"], "num_query_heads": _per_layer(hf["num_attention_heads"], n),
            "num_kv_heads": _per_layer(hf["num_key_value_heads"], n),
            "ffn_multipliers": [w / d for w in widths], "ffn_dim_divisor": math.gcd(*widths),
            "rope_freq_constant": hf["rope_theta"], "max_context_length": hf["max_position_embeddings"]}


def _openelm_common(hf: dict) -> dict:
    """config.json's fields under the names the common keys are written from (the per-layer lists as arrays)."""
    d = hf["model_dim"]
    return {**hf, "hidden_size": d, "num_hidden_layers": hf["num_transformer_layers"],
            "num_attention_heads": hf["num_query_heads"], "num_key_value_heads": hf["num_kv_heads"],
            "intermediate_size": [make_divisible(m * d, hf["ffn_dim_divisor"]) for m in hf["ffn_multipliers"]],
            "max_position_embeddings": hf["max_context_length"], "rms_norm_eps": EPS,
            "rope_parameters": {"rope_type": "default", "rope_theta": hf["rope_freq_constant"]}}


def _split_gate_up(t: torch.Tensor, hf: dict) -> list[torch.Tensor]:
    """ffn.proj_1 (gate rows, then up rows) as the converter's ffn_gate and ffn_up."""
    return list(t.chunk(2))


def _join_gate_up(parts: list[torch.Tensor], hf: dict) -> torch.Tensor:
    return torch.cat(parts)


ARCHS = {"openelm": Arch("openelm", fields=_openelm, common=_openelm_common,
                         split=((r"\.ffn\.proj_1\.weight$", (".mlp.gate_proj.weight", ".mlp.up_proj.weight"),
                                 _split_gate_up, _join_gate_up),))}
