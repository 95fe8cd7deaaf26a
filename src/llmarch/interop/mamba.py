"""Mamba (`model_type: mamba`) and Mamba-2 (`mamba2`): a stack of norm + mixer blocks with no FFN and no
positions, under `backbone.` (embeddings, layers.{i}.norm, layers.{i}.mixer.*, norm_f). The mixers' tensor
names are transformers' own (layers/mamba.py, layers/mamba2.py), so the map is one rule per tensor."""
from __future__ import annotations

import math

from ..config import ModelConfig
from ..errors import LlmarchError
from .hf import FAMILIES, Family
from .mapping import Rule

_L = "backbone.layers.{i}."
_BASE = [
    Rule.of("backbone.embeddings.weight", "embed.weight"),
    Rule.of(_L + "norm.weight", "blocks.{i}.ln1.weight"),
    Rule.of("backbone.norm_f.weight", "ln_final.weight"),
    Rule.of("lm_head.weight", "lm_head.weight"),
]
MAMBA_TENSORS = ("in_proj.weight", "in_proj.bias", "conv1d.weight", "conv1d.bias", "x_proj.weight", "dt_proj.weight",
                 "dt_proj.bias", "A_log", "D", "out_proj.weight", "out_proj.bias")
MAMBA2_TENSORS = ("in_proj.weight", "in_proj.bias", "conv1d.weight", "conv1d.bias", "dt_bias", "A_log", "D",
                  "norm.weight", "out_proj.weight", "out_proj.bias")


def mixer_rules(prefix: str, tensors: tuple[str, ...]) -> list[Rule]:
    return [Rule.of(prefix + t, "blocks.{i}.mixer." + t) for t in tensors]


def _check_act(hf: dict) -> None:
    if hf.get("hidden_act", "silu") != "silu":
        raise LlmarchError(f"{hf['model_type']}: hidden_act {hf['hidden_act']!r} is not supported (silu only)")


def common(hf: dict, mixer: str) -> dict:
    _check_act(hf)
    eos = hf.get("eos_token_id")
    return dict(name=hf.get("_name_or_path") or hf["model_type"], hf_model_type=hf["model_type"], mixer=mixer,
                ffn="none", norm="rmsnorm", norm_eps=hf.get("layer_norm_epsilon", 1e-5), positions="none",
                vocab_size=hf["vocab_size"], d_model=hf["hidden_size"], n_layers=hf["num_hidden_layers"], n_heads=1,
                ssm_state=hf.get("state_size", 16), ssm_expand=int(hf.get("expand", 2)),
                ssm_conv=hf.get("conv_kernel", 4), ssm_bias=hf.get("use_bias", False),
                ssm_conv_bias=hf.get("use_conv_bias", True), bias=False,
                tie_embeddings=hf.get("tie_word_embeddings", mixer == "mamba"),
                eos_id=eos if isinstance(eos, int) else None,
                # no positions: no limit, unless the model was given one (a run's context, kept on export)
                context_length=hf.get("max_position_embeddings", 1 << 20))


def common_hf(cfg: ModelConfig, arch: str, inner_norm: bool = False) -> dict:
    """config.json's keys that Mamba, Mamba-2 and Falcon Mamba share; inner_norm: the arch has (gainless) dt, B and
    C norms, as Falcon Mamba, which the others have not."""
    mixer = {"MambaForCausalLM": "mamba", "Mamba2ForCausalLM": "mamba2", "FalconMambaForCausalLM": "mamba"}[arch]
    if cfg.mixer != mixer or cfg.attn_period or cfg.ffn != "none" or cfg.norm != "rmsnorm" \
            or cfg.positions != "none":
        raise LlmarchError(f"{arch} is a stack of RMSNorm + {mixer} blocks with no FFN, attention or positions")
    if cfg.ssm_inner_norm != inner_norm or (inner_norm and cfg.ssm_inner_norm_gain):
        raise LlmarchError(f"{arch} needs ssm_inner_norm={inner_norm}" + (" with ssm_inner_norm_gain=False"
                                                                          if inner_norm else ""))
    if (cfg.ssm_inner, cfg.ssm_proj_multipliers, cfg.ssm_norm) != (None, None, "gated"):
        raise LlmarchError(f"{arch} has no ssm_inner, ssm_proj_multipliers or ssm_norm other than 'gated'")
    return dict(architectures=[arch], model_type=cfg.hf_model_type, vocab_size=cfg.vocab_size,
                hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers, state_size=cfg.ssm_state,
                expand=cfg.ssm_expand, conv_kernel=cfg.ssm_conv, use_bias=cfg.ssm_bias,
                use_conv_bias=cfg.ssm_conv_bias, hidden_act="silu", layer_norm_epsilon=cfg.norm_eps,
                tie_word_embeddings=cfg.tie_embeddings, residual_in_fp32=True,
                **({"max_position_embeddings": cfg.context_length} if cfg.context_length != 1 << 20 else {}),
                **({"eos_token_id": cfg.eos_id} if cfg.eos_id is not None else {}))


def mamba_config(hf: dict) -> ModelConfig:
    rank = hf.get("time_step_rank", "auto")
    rank = math.ceil(hf["hidden_size"] / 16) if rank == "auto" else int(rank)
    return ModelConfig(**common(hf, "mamba"), ssm_dt_rank=rank)


def mamba_hf(cfg: ModelConfig) -> dict:
    return dict(common_hf(cfg, "MambaForCausalLM"), time_step_rank=cfg.ssm_dt_rank)


def check_time_step_limit(hf: dict) -> None:
    """Mamba-2's clamp of dt, which llmarch does not have: only (0, inf), none, is read."""
    # transformers writes infinity as {"__float__": "Infinity"}
    limit = tuple(float(v["__float__"]) if isinstance(v, dict) else float(v)
                  for v in hf.get("time_step_limit") or (0.0, float("inf")))
    if limit != (0.0, float("inf")):
        raise LlmarchError(f"{hf.get('model_type')}: time_step_limit {list(limit)} is not supported (no clamp of dt)")


def mamba2_config(hf: dict) -> ModelConfig:
    check_time_step_limit(hf)
    heads, head_dim = hf["num_heads"], hf["head_dim"]
    if heads * head_dim != hf["hidden_size"] * int(hf.get("expand", 2)):
        raise LlmarchError(f"mamba2: num_heads * head_dim = {heads * head_dim} differs from hidden_size * expand")
    return ModelConfig(**common(hf, "mamba2"), ssm_head_dim=head_dim, ssm_groups=hf.get("n_groups", 1),
                       ssm_chunk=hf.get("chunk_size", 256))


def mamba2_hf(cfg: ModelConfig) -> dict:
    inner = cfg.ssm_expand * cfg.d_model
    return dict(common_hf(cfg, "Mamba2ForCausalLM"), num_heads=inner // cfg.ssm_head_dim,
                head_dim=cfg.ssm_head_dim, n_groups=cfg.ssm_groups, chunk_size=cfg.ssm_chunk)


MAMBA_RULES = _BASE + mixer_rules(_L + "mixer.", MAMBA_TENSORS)
FAMILIES.register("mamba")(Family(MAMBA_RULES, mamba_config, mamba_hf))
FAMILIES.register("mamba2")(Family(_BASE + mixer_rules(_L + "mixer.", MAMBA2_TENSORS), mamba2_config, mamba2_hf))
