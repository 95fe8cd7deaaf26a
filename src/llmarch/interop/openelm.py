"""Apple's OpenELM (`model_type: openelm`, remote code OpenELMForCausalLM; Mehta et al. 2024, "OpenELM: An Efficient
Language Model Family with Open Training and Inference Framework", §2.1): LLaMA-like pre-norm blocks (RMSNorm of eps
1e-6, SwiGLU, RoPE on halves, no biases, a tied head) that grow with depth by layer-wise scaling (Mehta et al. 2020,
"DeLighT"): layer i has its own query heads and key/value heads (`num_query_heads`, `num_kv_heads`, from qkv
multipliers spaced linearly over depth) of one head_dim, and its own FFN width, `ffn_multipliers[i]` x model_dim made
divisible by ffn_dim_divisor (the remote code's make_divisible); queries and keys pass a per-head RMSNorm before RoPE
(`normalize_qk_projections`: qk_norm 'head'). In llmarch that is a configuration: one layer type per layer shape,
named after it (`q12.kv3.ffn768`), its layer_overrides the fields that differ from layer 0's (n_heads, n_kv_heads,
ffn_hidden). Tensors live under `transformer.`: q, k, v fused (`attn.qkv_proj`, all q, all k, all v, as ours), gate
and up fused (`ffn.proj_1`, gate first, as ours). Refused: untied heads, ungated FFNs, activations other than swish,
norms other than RMSNorm, no QK-norm."""
from __future__ import annotations

import math

from ..config import ModelConfig
from ..errors import LlmarchError
from .expressible import refuse_unless_read_back
from .hf import FAMILIES, Family
from .mapping import Rule

_L, _B = "transformer.layers.{i}.", "blocks.{i}."
RULES = [
    Rule.of("transformer.token_embeddings.weight", "embed.weight"),
    Rule.of(_L + "attn_norm.weight", _B + "ln1.weight"),
    Rule.of(_L + "attn.qkv_proj.weight", _B + "attn.qkv_proj.weight"),
    Rule.of(_L + "attn.q_norm.weight", _B + "attn.q_norm.weight"),
    Rule.of(_L + "attn.k_norm.weight", _B + "attn.k_norm.weight"),
    Rule.of(_L + "attn.out_proj.weight", _B + "attn.o_proj.weight"),
    Rule.of(_L + "ffn_norm.weight", _B + "ln2.weight"),
    Rule.of(_L + "ffn.proj_1.weight", _B + "mlp.gate_up.weight"),
    Rule.of(_L + "ffn.proj_2.weight", _B + "mlp.down.weight"),
    Rule.of("transformer.norm.weight", "ln_final.weight"),
]
IGNORE = (r"rotary_emb\.|pos_sin$|pos_cos$",)
EPS = 1e-6  # the remote code's RMSNorm epsilon, fixed (the converter writes it so)


def make_divisible(v: float, divisor: int) -> int:
    """The remote code's make_divisible: v rounded to the nearest multiple of divisor (at least divisor), one more
    where that lost over 10% of v."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _per_layer(value, n: int, name: str, spaced: bool = False) -> list:
    """A per-layer list; a number for every layer; where `spaced`, a (first, last) pair spaced linearly over the
    layers, each rounded to 2 decimals (the remote code's layer-wise scaling of its multipliers)."""
    if not isinstance(value, list):
        return [value] * n
    if len(value) == n:
        return value
    if spaced and len(value) == 2:
        return [round(value[0] + (value[1] - value[0]) * i / max(n - 1, 1), 2) for i in range(n)]
    raise LlmarchError(f"openelm: {name} has {len(value)} entries for {n} layers")


def to_config(hf: dict) -> ModelConfig:
    n, d = hf["num_transformer_layers"], hf["model_dim"]
    kinds = {"ffn_with_glu": True, "activation_fn_name": "swish", "normalization_layer_name": "rms_norm",
             "normalize_qk_projections": True, "share_input_output_layers": True}
    for key, want in kinds.items():
        if hf.get(key, want) != want:
            raise LlmarchError(f"openelm: {key}={hf[key]!r} is not supported (only {want!r})")
    heads = _per_layer(hf["num_query_heads"], n, "num_query_heads")
    kv = _per_layer(hf["num_kv_heads"], n, "num_kv_heads")
    mults = _per_layer(hf["ffn_multipliers"], n, "ffn_multipliers", spaced=True)
    widths = [make_divisible(m * d, hf.get("ffn_dim_divisor", 256)) for m in mults]
    layers = [dict(n_heads=h, n_kv_heads=k, ffn_hidden=w) for h, k, w in zip(heads, kv, widths)]
    types = [f"q{h}.kv{k}.ffn{w}" for h, k, w in zip(heads, kv, widths)]
    overrides = {t: {f: v for f, v in layer.items() if v != layers[0][f]} for t, layer in zip(types, layers)}
    return ModelConfig(name=hf.get("_name_or_path") or "openelm", hf_model_type="openelm", vocab_size=hf["vocab_size"],
                       d_model=d, n_layers=n, **layers[0], head_dim=hf["head_dim"], ffn="swiglu", norm="rmsnorm",
                       norm_eps=EPS, positions="rope", rope_theta=float(hf.get("rope_freq_constant", 10000)),
                       qk_norm="head", bias=False, qkv_bias=False, norm_bias=False, tie_embeddings=True,
                       context_length=hf.get("max_context_length", 2048),
                       layer_types=types if len(set(types)) > 1 else None,
                       layer_overrides={t: f for t, f in overrides.items() if f} or None)


def from_config(cfg: ModelConfig) -> dict:
    layers = [cfg.for_layer(i) for i in range(cfg.n_layers)]
    widths = [layer.ffn_hidden for layer in layers]
    groups = {layer.n_heads // layer.n_kv_heads for layer in layers}
    hf = dict(model_type="openelm", architectures=["OpenELMForCausalLM"], vocab_size=cfg.vocab_size,
              model_dim=cfg.d_model, num_transformer_layers=cfg.n_layers, head_dim=cfg.head_dim,
              num_query_heads=[layer.n_heads for layer in layers], num_kv_heads=[layer.n_kv_heads for layer in layers],
              num_gqa_groups=groups.pop() if len(groups) == 1 else None,
              # the multipliers that give these widths again, with a divisor that divides them all
              ffn_multipliers=[w / cfg.d_model for w in widths], ffn_dim_divisor=math.gcd(*widths),
              ffn_with_glu=True, activation_fn_name="swish", normalization_layer_name="rms_norm",
              normalize_qk_projections=True, share_input_output_layers=True, rope_freq_constant=cfg.rope_theta,
              max_context_length=cfg.context_length)
    return refuse_unless_read_back(cfg, hf, to_config)


FAMILIES.register("openelm")(Family(RULES, to_config, from_config, IGNORE))
