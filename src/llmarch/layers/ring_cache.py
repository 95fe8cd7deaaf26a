"""A sliding window's KV cache as a ring of w slots (Mistral 7B's rolling buffer cache, Jiang et al. 2023, §2): a
decoded token only reads the w keys before it, so token p is written at slot p mod w over the one w tokens back,
and the cache takes w slots per layer instead of the whole context (Gemma 3 at 32K tokens: 1,024 for each of its
five local layers in six). Softmax attention does not depend on the order of its keys, so the ring is read as it
lies; each slot remembers which position it holds (`positions`), which gives the padding mask and marks slots not
yet written.

It serves decoding that only moves forward, one prompt at once and then a token at a time (generate's eager
loop): it cannot take back a token (speculative decoding rewinds), move rows (continuous batching) or answer for
a position that left the window, so those keep the whole KVCache (`bounded` in Mixer.new_state)."""
from __future__ import annotations

import torch
from torch import nn


class RingKVCache(nn.Module):
    by_slot = False  # a position that left the ring cannot be returned to

    def __init__(self, batch: int, n_kv_heads: int, size: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device | str | None = None):
        super().__init__()
        shape = (batch, n_kv_heads, size, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        # the position each slot holds, -1 while empty
        self.register_buffer("positions", torch.full((size,), -1, dtype=torch.long, device=device), persistent=False)

    @property
    def size(self) -> int:
        return self.k.shape[2]

    @property
    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() + self.v.numel() * self.v.element_size()

    def write(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """k, v (B, Hkv, T, D) of positions input_pos (T,): the last `size` of them go to their slots."""
        n = min(k.shape[2], self.size)
        pos = input_pos[-n:]
        slots = pos % self.size
        self.k.index_copy_(2, slots, k[:, :, -n:].to(self.k.dtype))
        self.v.index_copy_(2, slots, v[:, :, -n:].to(self.v.dtype))
        self.positions.index_copy_(0, slots, pos)

    def key_mask(self, pad_mask: torch.Tensor | None) -> torch.Tensor:
        """bool (B|1, 1, 1, size): the slots written, and not padding (pad_mask (B, S): real key positions)."""
        written = self.positions >= 0
        if pad_mask is None:
            return written[None, None, None, :]
        real = pad_mask[:, self.positions.clamp(min=0)]  # (B, size)
        return (real & written)[:, None, None, :]

    def reorder(self, rows: torch.Tensor) -> None:
        """Row r now holds what row rows[r] held (beam search); every row holds the same positions."""
        self.k = self.k.index_select(0, rows)
        self.v = self.v.index_select(0, rows)
