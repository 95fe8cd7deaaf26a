"""Apertus (`model_type: apertus`; Swiss AI 2025, Apertus 8B and 70B): LLaMA's attention with a per-head RMSNorm on
queries and keys before RoPE (qk_norm 'head', as Qwen3), pre-norms named attention_layernorm and
feedforward_layernorm, and an ungated MLP (up_proj, down_proj) with the xIELU activation, whose two scalars are
learned per layer (ffn 'xielu', layers/ffn.py)."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, llama_like_config, llama_like_hf
from .mapping import Rule
from .qwen3 import RULES as QWEN3_RULES

_L = "model.layers.{i}."
RULES = [r for r in QWEN3_RULES if ".mlp." not in r.ours and ".ln" not in r.ours] + [
    Rule.of(_L + "attention_layernorm.weight", "blocks.{i}.ln1.weight"),
    Rule.of(_L + "feedforward_layernorm.weight", "blocks.{i}.ln2.weight"),
    *[Rule.of(_L + f"mlp.{hf}.{w}", f"blocks.{{i}}.mlp.{ours}.{w}") for hf, ours in (("up_proj", "up"),
                                                                                     ("down_proj", "down"))
      for w in ("weight", "bias")],
    *[Rule.of(_L + f"mlp.act_fn.{p}", f"blocks.{{i}}.mlp.act_fn.{p}") for p in ("alpha_p", "alpha_n", "beta", "eps")],
]


def to_config(hf: dict) -> ModelConfig:
    if hf.get("hidden_act", "xielu") != "xielu":
        raise LlmarchError(f"apertus: hidden_act {hf['hidden_act']!r} is not supported (xielu)")
    if hf.get("attention_bias"):
        raise LlmarchError("apertus: attention_bias=true is not supported")
    return llama_like_config({**hf, "hidden_act": "silu"}, ffn="xielu", qk_norm="head",
                             norm_eps=hf.get("rms_norm_eps", 1e-5))


def from_config(cfg: ModelConfig) -> dict:
    if cfg.ffn != "xielu" or cfg.qk_norm != "head" or cfg.norm != "rmsnorm" or cfg.norm_placement != "pre" \
            or cfg.qkv_bias or cfg.layer_types is not None or cfg.sliding_window is not None:
        raise LlmarchError("model_type apertus needs ffn='xielu', a per-head QK-norm, pre-norm RMSNorm, no q, k, v "
                           "biases and no windows or layer types")
    out = llama_like_hf(cfg.replace(ffn="swiglu"), architectures=["ApertusForCausalLM"])  # hidden_act set below
    out["hidden_act"] = "xielu"
    out.pop("attention_bias")
    return out


FAMILIES.register("apertus")(Family(RULES, to_config, from_config, IGNORE))
