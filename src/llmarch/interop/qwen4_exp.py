"""Qwen4-Exp (`model_type: qwen4_exp_text`, the text model of the `qwen4_exp` checkpoints): Qwen3.5-MoE's hybrid
(qwen3_5.py: Gated DeltaNet layers and gated full attention with QK-norm, experts with a gated shared expert on every
layer, zero-centred RMSNorms) with three changes. The residual stream is hc_count streams joined by gated
hyper-connections (layers/hyper.py: hyper_connection 'gated', hc_streams, hc_rank), whose gates replace the input
norms and, after the last block, the final norm. Its full-attention layers ("indexed_attention", or "full_attention" in
the published config) select their keys with the QSA indexer (attention 'qsa', attention_kinds/qsa.py: indexer_n_heads,
indexer_head_dim, indexer_budget, indexer_compress_ratio; one indexer key head). Its optional per-layer embeddings of
hashed token n-grams (ple_layer_ids) are not supported: such a config is refused. Its text RoPE is multimodal RoPE
with every position id the same for text, which is plain RoPE (partial_rotary_factor 1 unless the config says).
The vision-language wrapper (`qwen4_exp`) is read for its text model only: the vision tower (model.visual.) is not
read, as with Qwen3.5."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import rope_fraction
from . import multimodal
from .mapping import Rule
from .mixtral import STACKED
from .qwen3_5 import RULES as QWEN3_5_RULES, _IGNORE
from .qwen3_next import FULL, _layer_types, from_config as next_hf, to_config as next_config

_L = "model.layers.{i}."
_GATE = {"hc_norm.weight": "norm", "input_mix_weight_down.weight": "down.weight",
         "input_mix_weight_up.weight": "up.weight"}
_NORMS = ("blocks.{i}.ln1.weight", "blocks.{i}.ln2.weight", "ln_final.weight")
RULES = [r for r in QWEN3_5_RULES if r.ours not in _NORMS] + [
    *[Rule.of(f"{_L}{side}_hyper_connection.{t}", f"blocks.{{i}}.{ours}_hc.{o}")
      for side, ours in (("attn", "attn"), ("mlp", "ffn"))
      for t, o in {**_GATE, "block_inject_weight.weight": "inject.weight"}.items()],
    *[Rule.of(f"model.hyper_connection_mixer.{t}", f"hc_head.{o}") for t, o in _GATE.items()],
    Rule.of(_L + "self_attn.indexer.index_qk_proj.weight", "blocks.{i}.attn.qsa_proj.weight"),
    Rule.of(_L + "self_attn.indexer.q_layernorm.weight", "blocks.{i}.attn.qsa_q_norm.weight"),
    Rule.of(_L + "self_attn.indexer.k_layernorm.weight", "blocks.{i}.attn.qsa_k_norm.weight"),
]
_QSA = {"indexer_n_heads": "qsa_heads", "indexer_head_dim": "qsa_head_dim", "indexer_budget": "qsa_budget",
        "indexer_compress_ratio": "qsa_block"}


def to_config(hf: dict) -> ModelConfig:
    if hf.get("ple_layer_ids"):
        raise LlmarchError("qwen4_exp_text: per-layer n-gram embeddings (ple_layer_ids) are not supported")
    if (hf.get("output_gate_type") or hf.get("hidden_act", "silu")) != "silu":
        raise LlmarchError(f"qwen4_exp_text: output_gate_type {hf.get('output_gate_type')!r} is not supported (silu)")
    if any(hf.get(k) is None for k in _QSA) or hf.get("indexer_kv_heads", 1) != 1:
        raise LlmarchError(f"qwen4_exp_text needs the QSA indexer's {', '.join(_QSA)} and indexer_kv_heads=1")
    types = [FULL if t in ("indexed_attention", FULL) else t for t in _layer_types(hf)]
    cfg = next_config({**hf, "layer_types": types, "decoder_sparse_step": 1, "mlp_only_layers": [],
                       "intermediate_size": hf.get("intermediate_size", hf["moe_intermediate_size"]),  # no dense FFN
                       "partial_rotary_factor": rope_fraction(hf, 1.0)})
    return cfg.replace(attention="qsa", hyper_connection="gated", hc_streams=int(hf.get("hc_count", 4)),
                       hc_rank=int(hf.get("hc_lowrank", 320)), final_norm=False,
                       **{ours: int(hf[k]) for k, ours in _QSA.items()})


def from_config(cfg: ModelConfig) -> dict:
    if (cfg.hyper_connection != "gated" or cfg.attention != "qsa" or cfg.final_norm or not cfg.n_experts
            or cfg.moe_period != 1 or not cfg.router_renormalize or not cfg.n_shared_experts):
        raise LlmarchError("model_type qwen4_exp_text needs gated hyper-connections (no final norm), "
                           "attention 'qsa', and experts on every layer with renormalised top-k and a shared expert")
    out = {**next_hf(cfg), "model_type": "qwen4_exp_text", "architectures": ["Qwen4ExpForCausalLM"],
           "hc_count": cfg.hc_streams, "hc_lowrank": cfg.hc_rank, "indexer_kv_heads": 1,
           **{k: getattr(cfg, ours) for k, ours in _QSA.items()}}
    out["layer_types"] = ["indexed_attention" if t == FULL else t for t in out["layer_types"]]
    for key in ("decoder_sparse_step", "mlp_only_layers", "intermediate_size"):
        out.pop(key, None)
    return out


def multimodal_config(hf: dict) -> ModelConfig:
    text = hf.get("text_config") or {}
    return to_config({**text, "model_type": "qwen4_exp_text", "_name_or_path": hf.get("_name_or_path"),
                      "tie_word_embeddings": text.get("tie_word_embeddings", hf.get("tie_word_embeddings", False))})


FAMILIES.register("qwen4_exp_text")(Family(RULES, to_config, from_config, _IGNORE, stacked_experts=STACKED))
multimodal.register("qwen4_exp", FAMILIES["qwen4_exp_text"], multimodal_config, "qwen4_exp_text",
                    (r"^model\.visual\.",))
