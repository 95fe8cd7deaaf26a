"""NVFP4 rounding (NVIDIA's 4-bit float format, 2025): each run of 16 values along the last dim shares one scale
s = absmax / 6 stored as FP8 E4M3 (clamped to [2^-9, 448]), and each value becomes the nearest E2M1 number times s:
magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6, ties to even. Rounded and turned back to floats, as Kolibri 1.1's sparse layers
round their keys and values before attending (kv_fp4): a fake quantization that changes the numbers, not the storage."""
from __future__ import annotations

import torch


def nvfp4_round(x: torch.Tensor) -> torch.Tensor:
    """x (..., D), D a multiple of 16, rounded to NVFP4 and back, in x's dtype; the arithmetic in float32."""
    blocks = x.float().unflatten(-1, (-1, 16))
    scale = (blocks.abs().amax(-1, keepdim=True) / 6).clamp(2 ** -9, 448).to(torch.float8_e4m3fn).float()
    scaled = blocks / scale
    magnitude = scaled.abs().clamp(max=6)
    step = torch.where(magnitude < 2, 0.5, torch.where(magnitude < 4, 1.0, 2.0))  # E2M1's spacing in each range
    return ((torch.round(magnitude / step) * step).copysign(scaled) * scale).flatten(-2).to(x.dtype)
