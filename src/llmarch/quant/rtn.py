"""Round-to-nearest weight quantization, the baseline every other method is measured against.
- int8, symmetric per output channel: s_n = max_k |W_nk| / 127, q = round(W / s) in [-127, 127], W ~ s q.
- int4, asymmetric in groups of G input columns: s = (max - min) / 15, q = round((W - min) / s) in [0, 15],
  W ~ (q - 8) s + z with z = min + 8 s: the convention of torch's int4 kernels (tinygemm's, shared by gpt-fast
  and torchao), whose zero is a value in the weights' units, not an integer."""
from __future__ import annotations

import torch


def int8_scales(w: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """w (N, K) -> s (N,) = max_k |W_nk| / 127, rounded to `dtype`."""
    return (w.float().abs().amax(dim=1) / 127).clamp(min=1e-12).to(dtype)


def int8_rtn(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """w (N, K) -> codes int8 (N, K), scales fp32 (N,). A layer stores the scales in its compute dtype (bf16 by
    default) with these codes: rounding the codes against the bf16 scale instead lowered SmolLM2's weight error
    by 3.4% but raised its perplexity and logit error (docs/benchmarks.md), so it is not done here."""
    scales = int8_scales(w)
    return (w.float() / scales[:, None]).round().clamp(-127, 127).to(torch.int8), scales


def int4_rtn(w: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """w (N, K) -> codes uint8 (N, K) in [0, 15], scales and zeros fp32 (N, K / G)."""
    N, K = w.shape
    g = w.float().reshape(N, K // group_size, group_size)
    lo, hi = g.amin(dim=-1), g.amax(dim=-1)
    scales = ((hi - lo) / 15).clamp(min=1e-12)
    codes = ((g - lo[..., None]) / scales[..., None]).round().clamp(0, 15)
    return codes.to(torch.uint8).reshape(N, K), scales, lo + 8 * scales


def int4_dequantize(codes: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor) -> torch.Tensor:
    """codes (N, K), scales and zeros (N, K / G) -> W (N, K) fp32."""
    N, K = codes.shape
    g = codes.float().reshape(N, scales.shape[1], -1)
    return ((g - 8) * scales[..., None].float() + zeros[..., None].float()).reshape(N, K)


def pack_nibbles(codes: torch.Tensor) -> torch.Tensor:
    """(N, K) values in [0, 15] -> uint8 (N, K / 2): column 2j in the low nibble, 2j + 1 in the high one."""
    c = codes.to(torch.uint8)
    return c[:, 0::2] | (c[:, 1::2] << 4)


def unpack_nibbles(packed: torch.Tensor) -> torch.Tensor:
    """pack_nibbles' inverse: uint8 (N, K / 2) -> (N, K) in [0, 15]."""
    return torch.stack([packed & 15, packed >> 4], dim=-1).reshape(packed.shape[0], -1)
