"""BitNet b1.58 (`model_type: bitnet`; microsoft/bitnet-b1.58-2B-4T; Ma et al. 2024, "The Era of 1-bit LLMs"):
LLaMA's layout (RMSNorm pre-norms, RoPE, grouped-query attention) with two more RMSNorms, `attn_sub_norm` over the
concatenated heads before o_proj and `ffn_sub_norm` over the FFN's hidden activations before down_proj (our
sub_norm), and a gated squared-ReLU FFN, relu(x W_gate)^2 * x W_up (hidden_act relu2: our ffn "relu2_glu").
What transformers computes depends on config.json's `quantization_config`: without one, BitNetForCausalLM's
projections are plain nn.Linear and its forward is full precision (no rounding at all: our bitlinear "none");
with {quant_method: bitnet, linear_class: autobitlinear, quantization_mode: online} (the bf16 master weights)
each projection of the blocks is an AutoBitLinear that rounds its weights to ternary by their absmean and its
inputs to 8 bits per token at every call (our bitlinear "online", layers/bitlinear.py), the LM head excepted.
The packed checkpoints (linear_class bitlinear: 2-bit weights in uint8 with a weight_scale; or autobitlinear
offline) and use_rms_norm are refused. `attention_bias` puts biases on q, k, v and o; the MLP has none."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, RULES as LLAMA_RULES, llama_like_config, llama_like_hf
from .mapping import Rule

_L = "model.layers.{i}."
RULES = [r for r in LLAMA_RULES if not r.ours.endswith(("mlp.gate_up.bias", "mlp.down.bias"))] + [
    Rule.of(_L + "self_attn.attn_sub_norm.weight", "blocks.{i}.attn.sub_norm.weight"),
    Rule.of(_L + "mlp.ffn_sub_norm.weight", "blocks.{i}.mlp.sub_norm.weight")]
_ONLINE = {"quant_method": "bitnet", "linear_class": "autobitlinear", "quantization_mode": "online"}


def _bitlinear(quant: dict | None) -> str:
    """bitlinear for a config.json's quantization_config (see the module docstring)."""
    if not quant:
        return "none"
    if any(quant.get(k) != v for k, v in _ONLINE.items()) or quant.get("use_rms_norm") \
            or quant.get("modules_to_not_convert") not in (None, ["lm_head"]):
        raise LlmarchError(f"bitnet: quantization_config {quant} is not supported (only the full-precision "
                           f"weights: none, or {_ONLINE} with the LM head unconverted and no use_rms_norm)")
    return "online"


def to_config(hf: dict) -> ModelConfig:
    act = hf.get("hidden_act", "relu2")
    if act != "relu2":
        raise LlmarchError(f"bitnet: hidden_act {act!r} is not supported (relu2)")
    d, heads = hf["hidden_size"], hf["num_attention_heads"]
    if hf.get("head_dim") not in (None, d // heads):  # attn_sub_norm is as wide as hidden_size
        raise LlmarchError(f"bitnet: head_dim={hf['head_dim']} is not hidden_size / num_attention_heads")
    bias = bool(hf.get("attention_bias", False))
    return llama_like_config({**hf, "hidden_act": "silu", "mlp_bias": bias}, ffn="relu2_glu", bias=False,
                             qkv_bias=bias, o_bias=bias, sub_norm=True, norm_eps=hf.get("rms_norm_eps", 1e-5),
                             bitlinear=_bitlinear(hf.get("quantization_config")))


def _unexpressible(cfg: ModelConfig) -> str | None:
    needs = dict(ffn="relu2_glu", norm="rmsnorm", norm_placement="pre", sub_norm=True, bias=False,
                 qk_norm="none", sliding_window=None, layer_types=None, n_experts=0, rope_fraction=1.0)
    wrong = next((k for k, v in needs.items() if getattr(cfg, k) != v), None)
    if wrong:
        return f"{wrong}={needs[wrong]!r}"
    if cfg.qkv_bias != cfg.o_bias or cfg.head_dim * cfg.n_heads != cfg.d_model:
        raise LlmarchError("model_type bitnet needs biases on all of q, k, v, o or none, and heads x head_dim = "
                           "d_model")
    return None


def from_config(cfg: ModelConfig) -> dict:
    out = llama_like_hf(cfg.replace(ffn="swiglu", bias=cfg.qkv_bias), architectures=["BitNetForCausalLM"],
                        hidden_act="relu2")
    del out["mlp_bias"], out["head_dim"]
    if cfg.bitlinear == "online":
        out["quantization_config"] = dict(_ONLINE)
    return out


FAMILIES.register("bitnet")(Family(RULES, to_config, from_config, IGNORE, needs=_unexpressible))
