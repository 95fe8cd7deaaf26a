"""LLaMA 3.1's RoPE scaling in GGUF: the `rope_freqs` tensor of per-frequency divisors.

llama.cpp's converter stores no scaling keys for rope_type "llama3"; it writes each frequency's divisor f_i
(theta_i / f_i is the frequency that turns), as transformers' _compute_llama3_parameters scales it: 1 for a
wavelength below original_context / high_freq_factor, `factor` above original_context / low_freq_factor, and
1 / ((1 - s) / factor + s) between, with s = (original_context / wavelength - low) / (high - low).

Reading inverts that. Only two combinations of the three knobs show in the divisors, a = L / (high - low) and
b = low / (high - low) (s = a / wavelength - b, and the two bounds are s = 1 and s = 0), so every (L, low, high)
with the same a and b rotates alike: the reader takes low = 1 (Llama 3.1-3.3's), solves high and L from the
ramp's divisors, and checks that the config it gives makes the file's divisors again."""
from __future__ import annotations

import math

import numpy as np

from ..errors import LlmarchError

REL = 1e-4  # float32 divisors against float64 recomputation


def llama3_factors(theta: float, dim: int, factor: float, low: float, high: float, original: int) -> np.ndarray:
    """The divisors convert_hf_to_gguf.py writes for a llama3 rope of `dim` rotated dims."""
    out = []
    for i in range(0, dim, 2):
        wavelen = 2 * math.pi * theta ** (i / dim)
        if wavelen < original / high:
            out.append(1.0)
        elif wavelen > original / low:
            out.append(factor)
        else:
            smooth = (original / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, np.float32)


def _matches(factors: list[float], params: dict, theta: float, dim: int) -> bool:
    made = llama3_factors(theta, dim, params["factor"], params["low_freq_factor"], params["high_freq_factor"],
                          params["original_max_position_embeddings"])
    return len(made) == len(factors) and np.allclose(made, factors, rtol=REL, atol=0)


def llama3_from_factors(factors: list[float], theta: float, dim: int, context: int, path) -> dict | None:
    """The transformers rope_scaling a rope_freqs tensor stands for (None: all ones, no scaling)."""
    if len(factors) != dim // 2:
        raise LlmarchError(f"{path}: rope_freqs holds {len(factors)} divisors for {dim} rotated dims (want {dim // 2})")
    factor = max(factors)
    if min(factors) < 1 - REL:
        raise LlmarchError(f"{path}: rope_freqs divisors below 1 ({min(factors):g}) are not LLaMA 3 RoPE scaling")
    if factor <= 1 + REL:
        return None
    # the ramp's points: s = (1 / f - 1 / factor) / (1 - 1 / factor) = a / wavelength - b
    ramp = [(2 * math.pi * theta ** (2 * i / dim), f) for i, f in enumerate(factors)
            if 1 + REL < f < factor * (1 - REL)]
    candidates = []
    if len(ramp) >= 2:
        x = np.array([1 / w for w, _ in ramp])
        s = np.array([(1 / f - 1 / factor) / (1 - 1 / factor) for _, f in ramp])
        a, minus_b = np.polyfit(x, s, 1)
        b = -minus_b
        if b > 0:
            candidates.append((1 + 1 / b, round(a / b)))
    # too few ramp points to solve (tiny heads): Llama 3.1's knobs, over its original or this context
    candidates += [(4.0, 8192), (4.0, context)]
    for high, original in candidates:
        params = {"rope_type": "llama3", "factor": factor, "low_freq_factor": 1.0,
                  "high_freq_factor": round(high, 6), "original_max_position_embeddings": int(original)}
        if _matches(factors, params, theta, dim):
            return params
    raise LlmarchError(f"{path}: rope_freqs divisors that no LLaMA 3 RoPE scaling gives are not supported")


def llama3_tensor(hf: dict, dim: int) -> np.ndarray | None:
    """The rope_freqs tensor of a config.json with rope_type llama3 (None for any other rope)."""
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type")) != "llama3":
        return None
    theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
    return llama3_factors(theta, dim, rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"],
                          rope["original_max_position_embeddings"])
