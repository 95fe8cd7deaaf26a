"""llama.cpp's three plain block types dequantized in torch (ggml-quants.c's dequantize_row_q8_0, _q4_0, _q4_1),
the same fp32 values as gguf.quants.dequantize gives, bit for bit (tests/test_gguf_file.py), in one vectorised pass:
the gguf package works through each matrix in groups of rows in numpy, 0.8 s of SmolLM2's 2.8 s load. Every other
type still goes through the gguf package.
Per block of 32 weights: Q8_0 is d (fp16) and 32 int8 q, w = d q; Q4_0 is d and 16 bytes of 4-bit q (byte j holds
weight j in its low nibble and weight j + 16 in its high one), w = d (q - 8); Q4_1 adds m (fp16), w = d q + m."""
from __future__ import annotations

import numpy as np
import torch

BLOCK = 32
TYPES = ("Q8_0", "Q4_0", "Q4_1")


def dequantize(data: np.ndarray, type_name: str) -> torch.Tensor | None:
    """data: a tensor's rows of blocks as GGUFFile gives them (uint8 (..., bytes per row)) -> fp32 (..., row
    length); None for a type this module does not decode."""
    if type_name not in TYPES:
        return None
    rows = data.shape[:-1]
    header = 4 if type_name == "Q4_1" else 2
    per_block = header + (BLOCK if type_name == "Q8_0" else BLOCK // 2)
    blocks = torch.from_numpy(np.ascontiguousarray(data).reshape(-1, per_block).copy())  # a copy: the map is read-only
    d = blocks[:, :2].contiguous().view(torch.float16).float()  # (n, 1)
    if type_name == "Q8_0":
        w = blocks[:, 2:].view(torch.int8).float() * d
    else:
        packed = blocks[:, header:]
        q = torch.cat((packed & 15, packed >> 4), dim=1)  # weights 0..15, then 16..31
        if type_name == "Q4_0":
            w = d * (q.to(torch.int8) - 8).float()
        else:
            w = d * q.float() + blocks[:, 2:4].contiguous().view(torch.float16).float()
    return w.reshape(*rows, -1)
