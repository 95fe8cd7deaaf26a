"""Doge (`model_type: doge`; SmallDoge, Shi et al. 2024, "Wonderful Matrices", arXiv 2412.11834): LLaMA's layout
with two parts llmarch added for it:
- dynamic mask attention (attention 'dynamic_mask', attention_kinds/dynamic_mask.py): a bias per key and KV head,
  exp(A softplus(v W_dt)) from the key's values, added to every query's scores, and past keep_window_size keys only
  each query's keep_window_size best kept (dma_keep); `self_attn.A`, `self_attn.dt_proj`;
- learned residual gains: x = g * x + f(norm(x)), g per channel (residual_mix 'scaled'; `input_residual`,
  `post_attention_residual`);
beside a per-head RMSNorm on q and k (qk_norm 'head'). The Cross-Domain MoE (is_moe: product-key retrieval of
single-neuron experts beside a SwiGLU) is refused: transformers' DogeCDMoE splits the router logits of all tokens of
a forward with one view (B * T, 2 sqrt(E)) -> (2, B * T, sqrt(E)), so a token's expert choice reads other tokens'
logits (its code notes it: not causal in a full forward), which no causal model can reproduce."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf
from .mapping import Rule

_A, _L, _B = "model.layers.{i}.self_attn.", "model.layers.{i}.", "blocks.{i}."
RULES = LLAMA_RULES + [
    *[Rule.of(_A + f"{n}_norm.weight", _B + f"attn.{n}_norm.weight") for n in "qk"],
    Rule.of(_A + "A", _B + "attn.dma.A"),
    *[Rule.of(_A + f"dt_proj.{w}", _B + f"attn.dma.dt_proj.{w}") for w in ("weight", "bias")],
    Rule.of(_L + "input_residual", _B + "res_attn.weight"),
    Rule.of(_L + "post_attention_residual", _B + "res_mlp.weight"),
]


def to_config(hf: dict) -> ModelConfig:
    if hf.get("is_moe"):
        raise LlmarchError("doge: is_moe (the Cross-Domain MoE) is not supported: transformers' router mixes the "
                           "logits of different tokens (DogeCDMoE's view(2, B * T, -1)), which is not causal")
    if hf.get("sliding_window") is not None:
        raise LlmarchError("doge: sliding_window is not supported beside the dynamic mask")
    return llama_like_config({**hf, "num_key_value_heads": hf.get("num_key_value_heads")
                              or hf.get("num_attention_heads", 8)},
                             qk_norm="head", attention="dynamic_mask", dma_keep=int(hf.get("keep_window_size", 2048)),
                             residual_mix="scaled", dropout=float(hf.get("hidden_dropout") or 0.0))


def _needs(cfg: ModelConfig) -> str | None:
    if cfg.attention != "dynamic_mask" or cfg.qk_norm != "head" or cfg.residual_mix != "scaled" \
            or cfg.norm != "rmsnorm" or cfg.norm_placement != "pre" or cfg.ffn != "swiglu" or cfg.n_experts \
            or cfg.layer_types is not None or cfg.qkv_bias != cfg.bias or cfg.o_bias != cfg.bias:
        return ("dynamic mask attention with a per-head QK-norm, pre-norm RMSNorms with scaled residual adds, a "
                "SwiGLU MLP and no mixture, the same on every layer")
    return None


def from_config(cfg: ModelConfig) -> dict:
    return llama_like_hf(cfg, architectures=["DogeForCausalLM"], keep_window_size=cfg.dma_keep, is_moe=False,
                         sliding_window=None, hidden_dropout=cfg.dropout)


FAMILIES.register("doge")(Family(RULES, to_config, from_config, IGNORE, needs=_needs))
