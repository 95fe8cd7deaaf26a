"""Zyphra's Zamba (`model_type: zamba`, transformers' ZambaForCausalLM; Zamba-7B, Glorioso et al. 2024): Zamba2's
shape (interop/zamba2.py, layers/shared_block.py) one generation earlier. A Mamba backbone whose `hybrid` layers of
`layers_block_type` first run ONE shared transformer block on [x; embeddings] (attention without positions over the
2d-wide concatenation, scores scaled by (head_dim / 2)^-1/2, then a GeGLU of separate gate_proj / up_proj) and add
its output, through the layer's own `linear`, to their Mamba's input; no adapters. Its Mamba is Mamba-1 split into
`n_mamba_heads` independent slices (`ssm_heads`, layers/mamba.py: per-slice x_proj_weight, dt_proj_weight,
dt_proj_bias, A_log, D), with in_proj's x and gate rows alternating (layout rows_interleaved). The shared block
lives under the first hybrid layer (`model.layers.{first}.shared_transf.*`); later layers' copies are not read."""
from __future__ import annotations

import math

from ..config import ModelConfig
from ..errors import LlmarchError
from ..layers.ffn import FFN_ACTIVATION
from .activations import HF_GATED_ACTIVATIONS, PYTORCH_TANH, hf_activation, read_activation
from .hf import FAMILIES, Family
from .mapping import Rule
from .zamba2 import HYBRID, MAMBA, hybrid_layers, layer_types

_W = ("weight", "bias")
_MAMBA = ("conv1d.weight", "conv1d.bias", "x_proj_weight", "dt_proj_weight", "dt_proj_bias", "A_log", "D",
          "out_proj.weight", "out_proj.bias")
RULES = [
    Rule.of("model.embed_tokens.weight", "embed.weight"),
    Rule.of("model.final_layernorm.weight", "ln_final.weight"),
    Rule.of("lm_head.weight", "lm_head.weight"),
]
IGNORE = (r"\.shared_transf\.",)  # a later hybrid layer's copy of the shared block (the first one is read)
_OVERRIDES = {MAMBA: {"ffn": "none"}, HYBRID: {"mixer": "shared_block", "ffn": "none"}}


def _rules(cfg: ModelConfig) -> list[Rule]:
    hybrid, out = hybrid_layers(cfg), []
    for i in range(cfg.n_layers):
        L, B = f"model.layers.{i}.", f"blocks.{i}."
        M, ours = (L + "mamba_decoder.", B + "mixer.mamba.") if i in hybrid else (L, B + "mixer.")
        out += [Rule.of(M + "input_layernorm.weight", B + "ln1.weight"),
                *[Rule.of(M + f"mamba.in_proj.{w}", ours + f"in_proj.{w}", "rows_interleaved") for w in _W],
                *[Rule.of(M + "mamba." + t, ours + t) for t in _MAMBA]]
        if i in hybrid:
            out.append(Rule.of(L + "linear.weight", B + "mixer.proj.weight"))
    if hybrid:
        S, O = f"model.layers.{hybrid[0]}.shared_transf.", "shared_blocks.0."
        out += [Rule.of(S + "input_layernorm.weight", O + "ln_in.weight"),
                Rule.of(tuple(S + f"self_attn.{p}_proj.weight" for p in "qkv"), O + "attn.qkv_proj.weight"),
                Rule.of(S + "self_attn.o_proj.weight", O + "attn.o_proj.weight"),
                Rule.of(S + "pre_ff_layernorm.weight", O + "ln_mlp.weight"),
                Rule.of((S + "feed_forward.gate_proj.weight", S + "feed_forward.up_proj.weight"),
                        O + "mlp.gate_up.weight"),
                Rule.of(S + "feed_forward.down_proj.weight", O + "mlp.down.weight")]
    return out


def _refuse(hf: dict) -> None:
    """What transformers' Zamba computes otherwise than llmarch would."""
    if not hf.get("tie_word_embeddings", True):
        raise LlmarchError("zamba: tie_word_embeddings=False, with which transformers unties the shared block too "
                           "(each hybrid layer its own copy): not supported")
    if hf.get("hidden_mamba_act", "silu") != "silu":
        raise LlmarchError(f"zamba: hidden_mamba_act {hf['hidden_mamba_act']!r} is not supported (silu only)")
    d = hf["hidden_size"]
    if hf.get("attention_hidden_size") not in (None, 2 * d):
        raise LlmarchError("zamba: attention_hidden_size other than 2 * hidden_size is not supported")
    if (int(hf.get("mamba_expand", 2)) * d) % hf.get("n_mamba_heads", 2):
        raise LlmarchError("zamba: mamba_expand * hidden_size must split into n_mamba_heads")


def to_config(hf: dict) -> ModelConfig:
    _refuse(hf)
    types = layer_types(hf)
    d, heads = hf["hidden_size"], hf.get("num_attention_heads", 16)
    head_dim = hf.get("attention_head_dim") or 2 * d // heads
    rank = hf.get("mamba_dt_rank", "auto")
    eos = hf.get("eos_token_id", 2)
    return ModelConfig(
        name=hf.get("_name_or_path") or "zamba", hf_model_type="zamba", vocab_size=hf["vocab_size"], d_model=d,
        n_layers=len(types), n_heads=heads, n_kv_heads=hf.get("num_key_value_heads") or heads, head_dim=head_dim,
        attn_scale=(head_dim / 2) ** -0.5, ffn=read_activation(hf, "zamba", "hidden_act", "gelu", HF_GATED_ACTIVATIONS),
        ffn_hidden=hf.get("intermediate_size", 14848), norm="rmsnorm", norm_eps=hf.get("rms_norm_eps", 1e-5),
        positions="none", bias=False, qkv_bias=False, o_bias=False, tie_embeddings=True,
        context_length=hf.get("max_position_embeddings", 4096), eos_id=eos if isinstance(eos, int) else None,
        mixer="mamba", ssm_state=hf.get("mamba_d_state", 16), ssm_conv=hf.get("mamba_d_conv", 4),
        ssm_expand=int(hf.get("mamba_expand", 2)), ssm_dt_rank=math.ceil(d / 16) if rank == "auto" else int(rank),
        ssm_heads=hf.get("n_mamba_heads", 2), ssm_bias=bool(hf.get("mamba_proj_bias", False)),
        ssm_conv_bias=bool(hf.get("mamba_conv_bias", True)), shared_blocks=1, shared_block_mixer="mamba",
        layer_types=types, layer_overrides=_OVERRIDES)


def _unexpressible(cfg: ModelConfig) -> str | None:
    """What of a config Zamba's layout cannot hold (Family.needs)."""
    if cfg.layer_types is None or set(cfg.layer_types) - {MAMBA, HYBRID} or cfg.layer_overrides != _OVERRIDES \
            or cfg.mixer != "mamba":
        return "layer types mamba (mixer mamba) and hybrid (mixer shared_block), with no FFN in any block"
    want = dict(tie_embeddings=True, shared_block_mixer="mamba", shared_blocks=1, shared_adapters=None,
                attn_scale=(cfg.head_dim / 2) ** -0.5, norm="rmsnorm", positions="none", qkv_bias=False,
                o_bias=False, bias=False, ssm_inner_norm=False)
    bad = next((k for k, v in want.items() if getattr(cfg, k) != v), None)
    if bad is not None or cfg.ffn not in HF_GATED_ACTIVATIONS.values():
        return f"{bad or 'ffn'} as transformers' Zamba computes it"
    return None


def from_config(cfg: ModelConfig) -> dict:
    out = dict(
        architectures=["ZambaForCausalLM"], model_type="zamba", vocab_size=cfg.vocab_size, hidden_size=cfg.d_model,
        num_hidden_layers=cfg.n_layers, layers_block_type=["hybrid" if t == HYBRID else "mamba"
                                                           for t in cfg.layer_types],
        num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads, attention_head_dim=cfg.head_dim,
        intermediate_size=cfg.ffn_hidden, hidden_act=hf_activation(FFN_ACTIVATION[cfg.ffn], PYTORCH_TANH),
        hidden_mamba_act="silu",
        rms_norm_eps=cfg.norm_eps, max_position_embeddings=cfg.context_length, tie_word_embeddings=True,
        mamba_d_state=cfg.ssm_state, mamba_d_conv=cfg.ssm_conv, mamba_expand=cfg.ssm_expand,
        mamba_dt_rank=cfg.ssm_dt_rank, n_mamba_heads=cfg.ssm_heads, mamba_proj_bias=cfg.ssm_bias,
        mamba_conv_bias=cfg.ssm_conv_bias)
    if cfg.eos_id is not None:
        out["eos_token_id"] = cfg.eos_id
    return out


FAMILIES.register("zamba")(Family(RULES, to_config, from_config, IGNORE, needs=_unexpressible, more_rules=_rules))
