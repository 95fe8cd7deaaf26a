"""LFM3 (`model_type: lfm3`: LFM3-1.7B; Liquid AI 2026; transformers' modeling_lfm3.py): LFM2's hybrid (interop/
lfm2.py) of gated short convolutions (`conv` layers, mixer "shortconv") and attention, with
- two attention layer types: `sliding_attention` (a window of sliding_window keys, RoPE base 10k over the whole
  head) and `full_attention` (p-RoPE, rope_type 'proportional': half the frequencies turn, base 1M: Gemma 4's, our
  rope_scaling 'proportional'), each with its own rope_parameters entry;
- Qwen3's attention names (q_norm, k_norm: a per-head RMSNorm on queries and keys, o_proj) and a sigmoid gate per
  head from the layer's input, g_proj (use_attention_gate: attn_head_gate);
- sandwich norms (use_sandwich_norm: post_operator_norm and post_ffn_norm on each sublayer's output before the
  residual add, norm_placement 'sandwich');
- a SwiGLU feed_forward (w1 gate, w3 up, w2 down) of intermediate_size as given (no 2/3 adjustment).
The final norm is `embedding_norm`; the head tied by default."""
from __future__ import annotations

from ..config import ModelConfig
from ..errors import LlmarchError
from .gemma4 import check_expressible, rope_of_type, rope_of_type_hf
from .hf import FAMILIES, Family
from .lfm2 import RULES as LFM2_RULES
from .llama import IGNORE, llama_like_config, llama_like_hf
from .mapping import Rule

CONV, SLIDING, FULL = "conv", "sliding_attention", "full_attention"
_L, _A = "model.layers.{i}.", "model.layers.{i}.self_attn."
RULES = [r for r in LFM2_RULES if "self_attn." not in r.hf[0]] + [
    *[Rule.of(tuple(_A + f"{p}_proj.{w}" for p in "qkv"), f"blocks.{{i}}.attn.qkv_proj.{w}")
      for w in ("weight", "bias")],
    *[Rule.of(_A + f"o_proj.{w}", f"blocks.{{i}}.attn.o_proj.{w}") for w in ("weight", "bias")],
    *[Rule.of(_A + f"{n}_norm.weight", f"blocks.{{i}}.attn.{n}_norm.weight") for n in "qk"],
    # the head gate: gate_proj in checkpoints (transformers renames it g_proj on load, back on save)
    Rule.of(_A + "gate_proj.weight", "blocks.{i}.attn.g_proj.weight"),
    Rule.of(_L + "post_operator_norm.weight", "blocks.{i}.post_ln1.weight"),
    Rule.of(_L + "post_ffn_norm.weight", "blocks.{i}.post_ln2.weight"),
]
# what transformers' Lfm3Config assumes where config.json is silent
DEFAULTS = dict(intermediate_size=7680, num_key_value_heads=4, head_dim=128, max_position_embeddings=128_000,
                norm_eps=1e-5, tie_word_embeddings=True, conv_bias=False, conv_L_cache=7, sliding_window=256,
                use_sandwich_norm=True, use_attention_gate=True, attention_bias=False)
ROPE_DEFAULTS = {SLIDING: {"rope_type": "default", "rope_theta": 10_000.0},
                 FULL: {"rope_type": "proportional", "rope_theta": 1_000_000.0, "partial_rotary_factor": 0.5}}


def _types(hf: dict) -> list[str]:
    n = hf["num_hidden_layers"]
    types = list(hf.get("layer_types") or [FULL if i % 4 == 2 else SLIDING if i % 4 == 0 and i else CONV
                                           for i in range(n)])
    if len(types) != n or set(types) - {CONV, SLIDING, FULL}:
        raise LlmarchError(f"lfm3: layer_types must be {n} of {CONV}, {SLIDING}, {FULL}; got {types}")
    return types


def to_config(hf: dict) -> ModelConfig:
    hf = {**DEFAULTS, **hf}
    types = _types(hf)
    rope = hf.get("rope_parameters") or ROPE_DEFAULTS
    if not all(isinstance(rope.get(t), dict) for t in set(types) - {CONV}):
        raise LlmarchError(f"lfm3: rope_parameters must hold an entry per attention layer type, got {rope}")
    # the sliding layers' RoPE turns the whole head whatever partial_rotary_factor says, as Lfm3's rotary does
    ropes = {t: {"rope_fraction": 1.0, **rope_of_type(rope[t], hf)} for t in (SLIDING, FULL) if t in types}
    overrides = {t: dict(f) for t, f in ropes.items()}
    if SLIDING in overrides:
        overrides[SLIDING]["sliding_window"] = int(hf["sliding_window"])
    if CONV in types:
        overrides[CONV] = {"mixer": "shortconv"}
    bias, conv_bias = bool(hf["attention_bias"]), bool(hf["conv_bias"])
    return llama_like_config(
        {**hf, "hidden_act": "silu", "attention_bias": False, "rms_norm_eps": hf["norm_eps"]},
        **ropes.get(FULL, ropes.get(SLIDING, {})), qk_norm="head", qkv_bias=bias, o_bias=bias,
        attn_head_gate=bool(hf["use_attention_gate"]),
        norm_placement="sandwich" if hf["use_sandwich_norm"] else "pre", layer_types=types,
        layer_overrides=overrides or None, ssm_conv=int(hf["conv_L_cache"]), ssm_conv_bias=conv_bias,
        ssm_bias=conv_bias)


def from_config(cfg: ModelConfig) -> dict:
    if cfg.n_experts or cfg.ffn != "swiglu" or cfg.bias or cfg.norm != "rmsnorm" or cfg.ssm_bias != cfg.ssm_conv_bias:
        raise LlmarchError("model_type lfm3 needs dense SwiGLU FFNs without biases, RMSNorm and one conv_bias for "
                           "the convolutions and their projections")
    types, rope = [], {}
    for i in range(cfg.n_layers):
        lc = cfg.for_layer(i)
        kind = CONV if cfg.layer_mixer(i) == "shortconv" else SLIDING if lc.sliding_window else FULL
        types.append(kind)
        if kind != CONV:
            rope[kind] = rope_of_type_hf(lc)
    sliding = next((cfg.for_layer(i) for i, t in enumerate(types) if t == SLIDING), cfg)
    out = llama_like_hf(cfg, architectures=["Lfm3ForCausalLM"], layer_types=types, rope_parameters=rope,
                        norm_eps=cfg.norm_eps, conv_L_cache=cfg.ssm_conv, conv_bias=cfg.ssm_conv_bias,
                        sliding_window=sliding.sliding_window or 256,
                        use_sandwich_norm=cfg.norm_placement == "sandwich",
                        use_attention_gate=cfg.attn_head_gate, attention_bias=cfg.qkv_bias)
    for key in ("rms_norm_eps", "mlp_bias", "hidden_act"):
        out.pop(key)
    # transformers' defaults for these (124893 ...) lie past a smaller vocabulary
    out.update(pad_token_id=None, bos_token_id=None, eos_token_id=cfg.eos_id)
    check_expressible(cfg, to_config(out), "lfm3")
    return out


FAMILIES.register("lfm3")(Family(RULES, to_config, from_config, IGNORE))
