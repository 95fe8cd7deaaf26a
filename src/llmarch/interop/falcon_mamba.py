"""Falcon Mamba (`model_type: falcon_mamba`, transformers' FalconMambaForCausalLM; TII 2024, "Falcon Mamba: The First
Competitive Attention-free 7B Language Model"): Mamba's layout and tensors (mamba.py: RMSNorm + Mamba blocks under
`backbone.`, no FFN, no positions, a tied head by default) with RMS norms without gains over dt, B and C inside each
mixer, of their own epsilon `mixer_rms_eps` (ssm_inner_norm with ssm_inner_norm_gain=False and
ssm_inner_norm_eps). Those norms hold no weights (transformers keeps dummy ones as non-persistent buffers), so the
tensor map is Mamba's."""
from __future__ import annotations

import math

from ..config import ModelConfig
from .hf import FAMILIES, Family
from .mamba import MAMBA_RULES, common, common_hf


def to_config(hf: dict) -> ModelConfig:
    rank = hf.get("time_step_rank", "auto")
    rank = math.ceil(hf["hidden_size"] / 16) if rank == "auto" else int(rank)
    return ModelConfig(**common(hf, "mamba"), ssm_dt_rank=rank, ssm_inner_norm=True, ssm_inner_norm_gain=False,
                       ssm_inner_norm_eps=float(hf.get("mixer_rms_eps", 1e-6)))


def from_config(cfg: ModelConfig) -> dict:
    eps = cfg.norm_eps if cfg.ssm_inner_norm_eps is None else cfg.ssm_inner_norm_eps
    return dict(common_hf(cfg, "FalconMambaForCausalLM", inner_norm=True), time_step_rank=cfg.ssm_dt_rank,
                mixer_rms_eps=eps)


FAMILIES.register("falcon_mamba")(Family(MAMBA_RULES, to_config, from_config))
