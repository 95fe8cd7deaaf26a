"""RecurrentGemma (`model_type: recurrent_gemma`, transformers' RecurrentGemmaForCausalLM; Google's RecurrentGemma
2B and 9B, the Griffin architecture of De et al. 2024): residual blocks whose temporal mixer follows `block_types`
repeated over the layers (recurrent, recurrent, attention): Griffin's recurrent block (mixer "rglru",
layers/rglru.py, its tensors under `temporal_block.` and `temporal_block.rg_lru.` with transformers' names) or
local attention (sliding window `attention_window_size`, multi-query heads, RoPE on the first
`partial_rotary_factor` (0.5) of each head, q/k/v biases where `attention_bias`, always a bias on o_proj), each
block then a GeGLU MLP of intermediate_size / 2 with biases; Gemma's (1 + g) RMSNorms (`temporal_pre_norm`,
`channel_pre_norm`, `final_norm`), embeddings times sqrt(d) rounded to bfloat16 as transformers' `normalizer`
buffer is (our embed_multiplier: 50.5, not 50.596, for d = 2560), final logits soft-capped at
`logits_soft_cap`, head tied.

Padding: transformers runs the convolution over left padding (a padded row's first real tokens read the pads'
projections) and resets the recurrence only where the position ids say 0, so its padded rows differ from the rows
alone; llmarch keeps padding out of both (a padded row equals the row alone), so the two agree on unpadded rows."""
from __future__ import annotations

import torch

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .llama import IGNORE
from .mapping import Rule

_L = "model.layers.{i}."
_T = _L + "temporal_block."
_MLP = _L + "mlp_block."
_W = ("weight", "bias")
_LRU = ("recurrent_param", "input_gate_weight", "input_gate_bias", "recurrent_gate_weight", "recurrent_gate_bias")
RULES = [
    Rule.of("model.embed_tokens.weight", "embed.weight"),
    Rule.of(_L + "temporal_pre_norm.weight", "blocks.{i}.ln1.weight"),
    Rule.of(_L + "channel_pre_norm.weight", "blocks.{i}.ln2.weight"),
    *[Rule.of(tuple(_T + f"{p}_proj.{w}" for p in "qkv"), f"blocks.{{i}}.attn.qkv_proj.{w}") for w in _W],
    *[Rule.of(_T + f"o_proj.{w}", f"blocks.{{i}}.attn.o_proj.{w}") for w in _W],
    *[Rule.of(_T + f"{p}.{w}", f"blocks.{{i}}.mixer.{p}.{w}")
      for p in ("linear_x", "linear_y", "linear_out", "conv_1d") for w in _W],
    *[Rule.of(_T + f"rg_lru.{p}", f"blocks.{{i}}.mixer.{p}") for p in _LRU],
    *[Rule.of((_MLP + f"gate_proj.{w}", _MLP + f"up_proj.{w}"), f"blocks.{{i}}.mlp.gate_up.{w}") for w in _W],
    *[Rule.of(_MLP + f"down_proj.{w}", f"blocks.{{i}}.mlp.down.{w}") for w in _W],
    Rule.of("model.final_norm.weight", "ln_final.weight"),
    Rule.of("lm_head.weight", "lm_head.weight"),
]
_TYPES = {"recurrent": "rglru", "attention": "attention"}  # block_types -> llmarch's mixer of that layer type


def embed_multiplier(d: int) -> float:
    """sqrt(d) as transformers' RecurrentGemmaModel.normalizer holds it: a bfloat16 buffer."""
    return torch.tensor(d ** 0.5, dtype=torch.bfloat16).item()


def to_config(hf: dict) -> ModelConfig:
    act = hf.get("hidden_activation", "gelu_pytorch_tanh")
    if act != "gelu_pytorch_tanh":
        raise LlmarchError(f"recurrent_gemma: hidden_activation {act!r} is not supported (gelu_pytorch_tanh only)")
    rope = dict(hf.get("rope_parameters") or {})
    if rope.get("rope_type", "default") != "default":
        raise LlmarchError(f"recurrent_gemma: rope_type {rope['rope_type']!r} is not supported (transformers' "
                           "RecurrentGemma takes default only)")
    d, heads, n = hf["hidden_size"], hf["num_attention_heads"], hf["num_hidden_layers"]
    if d % heads:
        raise LlmarchError(f"recurrent_gemma: hidden_size {d} is not divisible by num_attention_heads {heads}")
    kinds = list(hf.get("block_types") or ("recurrent", "recurrent", "attention"))
    if set(kinds) - set(_TYPES):
        raise LlmarchError(f"recurrent_gemma: block_types {kinds} may name only recurrent and attention")
    types = (kinds * n)[:n]
    eos = hf.get("eos_token_id")
    return ModelConfig(
        name=hf.get("_name_or_path") or "recurrent_gemma", hf_model_type="recurrent_gemma", vocab_size=hf["vocab_size"],
        d_model=d, n_layers=n, n_heads=heads, n_kv_heads=hf.get("num_key_value_heads") or heads, head_dim=d // heads,
        ffn="geglu_tanh", ffn_hidden=hf["intermediate_size"] // 2, norm="rmsnorm_offset",
        norm_eps=hf.get("rms_norm_eps", 1e-6), positions="rope", rope_theta=float(rope.get("rope_theta", 10000.0)),
        rope_fraction=float(rope.get("partial_rotary_factor", 0.5)), bias=True,
        qkv_bias=bool(hf.get("attention_bias")), o_bias=True, norm_bias=False,
        tie_embeddings=hf.get("tie_word_embeddings", True), embed_multiplier=embed_multiplier(d),
        final_softcap=float(hf.get("logits_soft_cap", 30.0)), sliding_window=hf.get("attention_window_size", 2048),
        lru_width=hf.get("lru_width") or d, ssm_conv=hf.get("conv1d_width", 4), ssm_bias=True, ssm_conv_bias=True,
        layer_types=types, layer_overrides={"recurrent": {"mixer": "rglru"}} if "recurrent" in types else None,
        context_length=hf.get("max_position_embeddings", 8192),
        pad_id=hf.get("pad_token_id") or 0, eos_id=eos if isinstance(eos, int) else None)


# what transformers' RecurrentGemma computes beyond the fields from_config writes
_NEEDS = dict(norm="rmsnorm_offset", norm_placement="pre", final_norm=True, block="sequential", positions="rope",
              rope_scaling="none", qk_norm="none", attn_output_gate=False, attn_sinks=False, embed_scale=False,
              embed_norm=False, head_scale=False, head_bias=False, head_transform=False, attn_softcap=None,
              attention="sliding_window", n_experts=0, mixer="attention", attn_period=0, n_decoder_layers=0,
              type_vocab_size=0, causal=True, position_offset=0, ffn="geglu_tanh", bias=True, o_bias=True,
              ssm_bias=True, ssm_conv_bias=True, attn_scale=None, residual_multiplier=1.0, logit_divisor=1.0,
              clip_qkv=None, v_norm=False, layer_scalar=False, ple_dim=0, kv_shared_layers=0, attn_k_eq_v=False)


def _unexpressible(cfg: ModelConfig) -> str | None:
    wrong = next((f"{k}={v!r}" for k, v in _NEEDS.items() if getattr(cfg, k) != v), None)
    if wrong is None and cfg.embed_multiplier != embed_multiplier(cfg.d_model):
        wrong = f"embed_multiplier={embed_multiplier(cfg.d_model)} (sqrt(d_model) in bfloat16)"
    if wrong is None and cfg.head_dim * cfg.n_heads != cfg.d_model:
        wrong = "head_dim * n_heads = d_model"
    if wrong is None and cfg.final_softcap is None:
        wrong = "a final_softcap"
    return wrong


def _block_types(cfg: ModelConfig) -> list[str]:
    """The shortest period of the layers' mixers, as block_types (transformers repeats it over the layers)."""
    kinds = ["recurrent" if cfg.layer_mixer(i) == "rglru" else "attention" for i in range(cfg.n_layers)]
    if set(cfg.layer_mixer(i) for i in range(cfg.n_layers)) - set(_TYPES.values()):
        raise LlmarchError("model_type recurrent_gemma needs rglru and attention layers")
    return next(kinds[:p] for p in range(1, len(kinds) + 1) if (kinds[:p] * len(kinds))[:len(kinds)] == kinds)


def from_config(cfg: ModelConfig) -> dict:
    out = dict(architectures=["RecurrentGemmaForCausalLM"], model_type="recurrent_gemma", vocab_size=cfg.vocab_size,
               hidden_size=cfg.d_model, intermediate_size=2 * cfg.ffn_hidden, num_hidden_layers=cfg.n_layers,
               num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads, lru_width=cfg.lru_width or
               cfg.d_model, attention_window_size=cfg.sliding_window, conv1d_width=cfg.ssm_conv,
               logits_soft_cap=cfg.final_softcap, rms_norm_eps=cfg.norm_eps, hidden_activation="gelu_pytorch_tanh",
               rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta,
                                "partial_rotary_factor": cfg.rope_fraction},
               block_types=_block_types(cfg), attention_bias=cfg.qkv_bias,
               tie_word_embeddings=cfg.tie_embeddings, max_position_embeddings=cfg.context_length,
               pad_token_id=cfg.pad_id)
    if cfg.eos_id is not None:
        out["eos_token_id"] = cfg.eos_id
    return out


FAMILIES.register("recurrent_gemma")(Family(RULES, to_config, from_config, IGNORE, needs=_unexpressible))
