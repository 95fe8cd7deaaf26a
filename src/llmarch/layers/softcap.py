"""Logit soft-capping (Gemma 2, Gemma Team 2024, §2 "Logit soft-capping"; from Bello et al. 2016):
x -> cap * tanh(x / cap), close to x for |x| << cap and bounded in (-cap, cap). Gemma 2 caps the attention
scores before the softmax (cap 50: ModelConfig.attn_softcap) and the LM head's logits (cap 30: final_softcap),
which keeps them from growing without bound in training."""
from __future__ import annotations

import torch


def soft_cap(x: torch.Tensor, cap: float | None) -> torch.Tensor:
    """cap * tanh(x / cap); x unchanged when cap is None."""
    return x if cap is None else torch.tanh(x / cap) * cap
