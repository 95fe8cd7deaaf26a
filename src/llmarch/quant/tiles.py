"""Reading int4 codes straight out of the CPU kernel's tiles (`aten._convert_weight_to_int4pack_for_cpu`), whose
layout is the kernel's own and differs between CPU builds. The one read here is the AVX-512 build's for N a multiple
of 64: per block of 64 output rows, a (K, 32) array of bytes, row r of the block in byte r's low nibble for r < 32
and byte r - 32's high nibble otherwise. Whether this build packs that way is checked once per N, by packing a
random probe and reading it back; where it does not, the caller reads the codes through the kernel instead
(Int4Linear.columns and codes: rows of the identity times W^T, as costly as a K-token forward)."""
from __future__ import annotations

from functools import cache

import torch

BLOCK = 64  # output rows per tile


def tile_codes(packed: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """packed (N, K/2) uint8 in tiles -> codes (N, stop - start) uint8 of input columns start..stop."""
    N, K = packed.shape[0], packed.shape[1] * 2
    b = packed.view(N // BLOCK, K, BLOCK // 2)[:, start:stop]  # (N/64, columns, 32)
    codes = torch.cat([b & 15, b >> 4], dim=-1)  # (N/64, columns, 64): rows 0..31, then 32..63, of each block
    return codes.transpose(1, 2).reshape(N, stop - start)


@cache
def readable(n_rows: int) -> bool:
    """Whether this build's tiles for n_rows output rows are the layout tile_codes reads."""
    if n_rows % BLOCK:
        return False
    probe = torch.randint(0, 16, (n_rows, 64), dtype=torch.int32, generator=torch.Generator().manual_seed(0))
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(probe, 1)
    return tuple(packed.shape) == (n_rows, 32) and packed.dtype == torch.uint8 and torch.equal(
        tile_codes(packed, 0, 64).int(), probe)
