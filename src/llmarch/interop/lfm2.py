"""LFM2 (`model_type: lfm2`: LFM2-350M to 2.6B; Liquid AI 2025, "LFM2 Technical Report"): a hybrid whose
layer_types name each layer `conv` (a gated short convolution: mixer "shortconv", layers/shortconv.py, under
`conv.`: in_proj, conv, out_proj) or `full_attention` (GQA with RoPE and a per-head RMSNorm on queries and keys,
`q_layernorm`/`k_layernorm`, its output projection named `out_proj`); each followed by a SwiGLU
`feed_forward` (w1 gate, w3 up, w2 down) whose width is intermediate_size x 2/3 x block_ffn_dim_multiplier rounded
up to block_multiple_of (block_auto_adjust_ff_dim); `operator_norm` before the mixer, `ffn_norm` before the FFN,
and the final norm named `embedding_norm`; the head tied by default."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE, llama_like_config, llama_like_hf
from .mapping import Rule

CONV, FULL = "conv", "full_attention"
_L = "model.layers.{i}."
RULES = [
    Rule.of("model.embed_tokens.weight", "embed.weight"),
    Rule.of(tuple(_L + f"self_attn.{p}_proj.weight" for p in "qkv"), "blocks.{i}.attn.qkv_proj.weight"),
    Rule.of(_L + "self_attn.out_proj.weight", "blocks.{i}.attn.o_proj.weight"),
    Rule.of(_L + "self_attn.q_layernorm.weight", "blocks.{i}.attn.q_norm.weight"),
    Rule.of(_L + "self_attn.k_layernorm.weight", "blocks.{i}.attn.k_norm.weight"),
    *[Rule.of(_L + f"conv.{p}.{w}", f"blocks.{{i}}.mixer.{p}.{w}") for p in ("in_proj", "out_proj")
      for w in ("weight", "bias")],
    *[Rule.of(_L + f"conv.conv.{w}", f"blocks.{{i}}.mixer.conv1d.{w}") for w in ("weight", "bias")],
    Rule.of((_L + "feed_forward.w1.weight", _L + "feed_forward.w3.weight"), "blocks.{i}.mlp.gate_up.weight"),
    Rule.of(_L + "feed_forward.w2.weight", "blocks.{i}.mlp.down.weight"),
    Rule.of(_L + "operator_norm.weight", "blocks.{i}.ln1.weight"),
    Rule.of(_L + "ffn_norm.weight", "blocks.{i}.ln2.weight"),
    Rule.of("model.embedding_norm.weight", "ln_final.weight"),
    Rule.of("lm_head.weight", "lm_head.weight"),
]


def ffn_width(hf: dict) -> int:
    """Lfm2MLP's width: with block_auto_adjust_ff_dim, 2/3 of intermediate_size, times the multiplier, rounded up
    to block_multiple_of."""
    width = int(hf["intermediate_size"])
    if not hf.get("block_auto_adjust_ff_dim", True):
        return width
    width = int(2 * width / 3)
    multiplier, multiple = hf.get("block_ffn_dim_multiplier", 1.0), int(hf.get("block_multiple_of", 256))
    if multiplier is not None:
        width = multiple * ((int(multiplier * width) + multiple - 1) // multiple)
    return width


def to_config(hf: dict) -> ModelConfig:
    n = hf["num_hidden_layers"]
    full = hf.get("full_attn_idxs")
    types = list(hf.get("layer_types") or [FULL if full is None or i in full else CONV for i in range(n)])
    if set(types) - {CONV, FULL}:
        raise LlmarchError(f"lfm2: layer types other than {CONV} and {FULL}: {sorted(set(types))}")
    bias = bool(hf.get("conv_bias", False))
    return llama_like_config(
        {**hf, "hidden_act": "silu", "intermediate_size": ffn_width(hf), "tie_word_embeddings":
         hf.get("tie_word_embeddings", True)}, qk_norm="head", norm_eps=hf.get("norm_eps", 1e-5),
        layer_types=types, layer_overrides={CONV: {"mixer": "shortconv"}} if CONV in types else None,
        ssm_conv=int(hf.get("conv_L_cache", 3)), ssm_conv_bias=bias, ssm_bias=bias)


def from_config(cfg: ModelConfig) -> dict:
    if cfg.n_experts:
        raise LlmarchError("model_type lfm2 has no experts (lfm2_moe has)")
    return lfm2_hf(cfg, "Lfm2ForCausalLM")


def lfm2_hf(cfg: ModelConfig, architecture: str) -> dict:
    """LFM2's config.json (and LFM2-MoE's but its mixture): the layer types, the convolution, norms."""
    mixers = {cfg.layer_mixer(i) for i in range(cfg.n_layers)}
    if mixers - {"attention", "shortconv"} or cfg.qk_norm != "head" or cfg.ffn != "swiglu" or cfg.bias \
            or cfg.qkv_bias or cfg.norm != "rmsnorm" or cfg.sliding_window is not None or cfg.ssm_bias != \
            cfg.ssm_conv_bias or set(cfg.layer_overrides or {}) - {CONV}:
        raise LlmarchError("model_type lfm2 needs attention (per-head QK-norm, no biases) and shortconv layers "
                           "(one conv_bias for the convolution and its projections), SwiGLU and RMSNorm")
    types = [CONV if cfg.layer_mixer(i) == "shortconv" else FULL for i in range(cfg.n_layers)]
    out = llama_like_hf(cfg, architectures=[architecture], layer_types=types, norm_eps=cfg.norm_eps,
                        conv_L_cache=cfg.ssm_conv, conv_bias=cfg.ssm_conv_bias, block_auto_adjust_ff_dim=False)
    for key in ("rms_norm_eps", "mlp_bias", "attention_bias", "hidden_act"):
        out.pop(key)
    return out


FAMILIES.register("lfm2")(Family(RULES, to_config, from_config, IGNORE))
