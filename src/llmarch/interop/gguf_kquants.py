"""Q4_K and Q6_K blocks out, which the `gguf` package reads (gguf.quants.dequantize) but cannot write: llama.cpp's
most used 4-bit type (the bulk of every Q4_K_M file) and the 6-bit one a Q4_K_M file gives its output matrix and
some layers' attn_v and ffn_down.

A Q4_K block (ggml-common.h, block_q4_K) holds 256 weights of one row in 144 bytes: fp16 d and dmin, then 12 bytes
of eight 6-bit scales sc_j and eight 6-bit mins m_j (one pair per sub-block of 32), then the 4-bit codes,
two per byte. Weight i of sub-block j is w = d sc_j q_i - dmin m_j, q in 0..15.

Quantizing here is round-to-nearest at both levels: each sub-block's range [min(w, 0), max(w)] gives its scale
(max - min) / 15 and its min, the super-block's d and dmin are the largest of those over 63 (stored in fp16),
sc_j and m_j round to 6 bits against them, and each q rounds against the sub-block's effective scale and min.
llama.cpp's own quantizer (make_qkx2_quants) also searches each sub-block's range for the least squared error:
its files are a little more accurate than these, in the same format.

A Q6_K block (block_q6_K) holds 256 weights in 210 bytes: the low 4 bits of each 6-bit code (ql, 128 bytes), their
high 2 bits (qh, 64 bytes), sixteen int8 scales sc_j (one per sub-block of 16), and fp16 d; w = d sc_j (q - 32),
q in 0..63. Round-to-nearest again, with llama.cpp's signs (quantize_row_q6_K_ref): each sub-block's scale maps
its value of largest magnitude to q - 32 = -32, the super-block's d maps the scale of largest magnitude to -128."""
from __future__ import annotations

import numpy as np

QK_K, SUB, BLOCK_BYTES = 256, 32, 144
Q6_SUB, Q6_BYTES = 16, 210


def quantize_q4_k(w: np.ndarray) -> np.ndarray:
    """w (..., K), K a multiple of 256 -> the blocks as bytes, (..., K / 256 * 144) uint8, row by row."""
    if w.shape[-1] % QK_K:
        raise ValueError(f"Q4_K needs rows of a multiple of {QK_K} weights, got {w.shape[-1]}")
    x = w.astype(np.float32).reshape(-1, QK_K // SUB, SUB)  # (blocks, 8 sub-blocks, 32)
    low = np.minimum(x.min(-1), 0.0)  # the offset subtracts dmin m >= 0: a sub-block's min is at most 0
    scale, mins = (x.max(-1) - low) / 15, -low
    d = (scale.max(-1) / 63).astype(np.float16)
    dmin = (mins.max(-1) / 63).astype(np.float16)
    sc = _six_bits(scale, d.astype(np.float32))
    m = _six_bits(mins, dmin.astype(np.float32))
    step = d.astype(np.float32)[:, None] * sc  # what the reader multiplies q by, and subtracts
    offset = dmin.astype(np.float32)[:, None] * m
    q = np.where(step[..., None] > 0, np.rint((x + offset[..., None]) / np.where(step > 0, step, 1)[..., None]), 0)
    q = q.clip(0, 15).astype(np.uint8)
    packed = np.empty((x.shape[0], 12), dtype=np.uint8)  # sc_0..3, m_0..3 low 6 bits; 4..7 split over the rest
    packed[:, 0:4] = (sc[:, :4] & 63) | ((sc[:, 4:] >> 4) << 6)
    packed[:, 4:8] = (m[:, :4] & 63) | ((m[:, 4:] >> 4) << 6)
    packed[:, 8:12] = (sc[:, 4:] & 15) | ((m[:, 4:] & 15) << 4)
    q = q.reshape(-1, 4, 2, SUB)  # 32 bytes per pair of sub-blocks: 2c in the low nibbles, 2c + 1 in the high
    codes = (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(-1, QK_K // 2)
    blocks = np.concatenate([d[:, None].view(np.uint8), dmin[:, None].view(np.uint8), packed, codes], axis=1)
    return blocks.reshape(*w.shape[:-1], w.shape[-1] // QK_K * BLOCK_BYTES)


def _six_bits(values: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """values (blocks, 8) >= 0 in steps of unit (blocks,) -> 0..63 uint8 (0 where the unit is 0)."""
    safe = np.where(unit > 0, unit, 1)[:, None]
    return np.where(unit[:, None] > 0, np.rint(values / safe), 0).clip(0, 63).astype(np.uint8)


def quantize_q6_k(w: np.ndarray) -> np.ndarray:
    """w (..., K), K a multiple of 256 -> the Q6_K blocks as bytes, (..., K / 256 * 210) uint8, row by row."""
    if w.shape[-1] % QK_K:
        raise ValueError(f"Q6_K needs rows of a multiple of {QK_K} weights, got {w.shape[-1]}")
    x = w.astype(np.float32).reshape(-1, QK_K // Q6_SUB, Q6_SUB)  # (blocks, 16 sub-blocks, 16)
    top = np.take_along_axis(x, np.abs(x).argmax(-1)[..., None], -1)[..., 0]  # signed, largest |x|
    scale = -top / 32
    big = np.take_along_axis(scale, np.abs(scale).argmax(-1)[:, None], -1)[:, 0]
    d = (-big / 128).astype(np.float16)
    unit = d.astype(np.float32)
    safe = np.where(unit != 0, unit, 1)[:, None]
    sc = np.where(unit[:, None] != 0, np.rint(scale / safe), 0).clip(-128, 127).astype(np.int8)
    step = unit[:, None] * sc  # what the reader multiplies q - 32 by
    q = np.where(step[..., None] != 0, np.rint(x / np.where(step != 0, step, 1)[..., None]), 0)
    q = (q.clip(-32, 31) + 32).astype(np.uint8).reshape(-1, 2, 4, 32)  # (blocks, half, quarter, 32)
    ql = np.concatenate([(q[:, :, 0] & 15) | ((q[:, :, 2] & 15) << 4),  # quarters 0 and 2 share bytes 0..31
                         (q[:, :, 1] & 15) | ((q[:, :, 3] & 15) << 4)], axis=2)  # 1 and 3 bytes 32..63
    qh = (q[:, :, 0] >> 4) | ((q[:, :, 1] >> 4) << 2) | ((q[:, :, 2] >> 4) << 4) | ((q[:, :, 3] >> 4) << 6)
    blocks = np.concatenate([ql.reshape(-1, QK_K // 2), qh.reshape(-1, QK_K // 4), sc.view(np.uint8),
                             d[:, None].view(np.uint8)], axis=1)
    return blocks.reshape(*w.shape[:-1], w.shape[-1] // QK_K * Q6_BYTES)
