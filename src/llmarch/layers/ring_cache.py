"""A sliding window's KV cache as a ring of w slots (Mistral 7B's rolling buffer cache, Jiang et al. 2023, §2): a
decoded token only reads the w keys before it, so token p is written at slot p mod w over the one w tokens back,
and the cache takes w slots per layer instead of the whole context (Gemma 3 at 32K tokens: 1,024 for each of its
five local layers in six). Softmax attention does not depend on the order of its keys, so the ring is read as it
lies; each slot remembers which position it holds (`positions`), which gives the padding mask and marks slots not
yet written.

It serves decoding that only moves forward, one prompt at once and then a token at a time (generate's eager
loop, the server's running batch): it cannot take back a token (speculative decoding rewinds, and keeps the whole
KVCache: `bounded` in Stack.setup_cache). For continuous batching (generate/batch.py) it takes a request's
prefilled cache into a row (put_row), moves every row left (shift: the ring stays, an offset moves, so slot
p + offset mod w still holds position p) and gives views of its first rows (rows)."""
from __future__ import annotations

import torch

from .kv_cache import KVCache


class RingKVCache(KVCache):
    """A KVCache of `size` slots (its max_len), reused in turn; nbytes and reorder (beam search: every row holds
    the same positions) are the KVCache's."""

    by_slot = False  # a position that left the ring cannot be returned to
    is_ring = True

    def __init__(self, batch: int, n_kv_heads: int, size: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device | str | None = None, v_dim: int | None = None):
        super().__init__(batch, n_kv_heads, size, head_dim, dtype, device, v_dim)
        # the position each slot holds, -1 while empty (every row holds the same positions: they share one pointer)
        self.register_buffer("positions", torch.full((size,), -1, dtype=torch.long, device=device), persistent=False)
        # position p lives in slot (p + offset) mod size; shift moves positions, not the ring, and adds to it
        self.register_buffer("offset", torch.zeros((), dtype=torch.long, device=device), persistent=False)

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        """k, v (B, Hkv, T, D) of positions input_pos (T,): the last max_len of them go to their slots; returns the
        ring (B, Hkv, max_len, D), in slot order (key_mask says which slots attention may read)."""
        n = min(k.shape[2], self.max_len)
        pos = input_pos[-n:]
        slots = (pos + self.offset) % self.max_len
        self.k.index_copy_(2, slots, k[:, :, -n:].to(self.k.dtype))
        self.v.index_copy_(2, slots, v[:, :, -n:].to(self.v.dtype))
        self.positions.index_copy_(0, slots, pos)
        return self.k, self.v

    def key_mask(self, pad_mask: torch.Tensor | None, kv_len: int) -> torch.Tensor:
        """bool (B|1, 1, 1, max_len): the slots that hold one of the last max_len of the kv_len positions (not empty,
        not left from an earlier request of a running batch), and not padding (pad_mask (B, S): real keys)."""
        p = self.positions
        held = (p >= max(kv_len - self.max_len, 0)) & (p < kv_len)
        if pad_mask is None:
            return held[None, None, None, :]
        real = pad_mask[:, p.clamp(0, pad_mask.shape[1] - 1)]  # (B, size)
        return (real & held)[:, None, None, :]

    def put_row(self, row: int, src, start: int, length: int) -> None:
        """Row `row` takes src's row 0 (a KV cache of at least `length` slots), its first `length` slots as
        positions start.. (continuous batching: a request prefilled alone joins the running batch); the ring
        keeps the last max_len of them."""
        n = min(length, self.max_len)
        pos = torch.arange(start + length - n, start + length, device=self.k.device)
        slots = (pos + self.offset) % self.max_len
        self.k[row, :, slots] = src.k[0, :, length - n:length].to(self.k.dtype)
        self.v[row, :, slots] = src.v[0, :, length - n:length].to(self.v.dtype)
        self.positions[slots] = pos

    def shift(self, n: int) -> None:
        """Every row's position p + n becomes p (n < 0: p + n, to the right); those below 0 are dropped."""
        self.positions.sub_(n).masked_fill_(self.positions < 0, -1)
        self.offset.add_(n)

    def rows(self, n: int) -> "RingKVCache":
        """The first n rows, sharing this cache's memory, positions and offset."""
        view = RingKVCache(0, 0, 0, 0, self.k.dtype, "meta")
        view.k, view.v, view.positions, view.offset = self.k[:n], self.v[:n], self.positions, self.offset
        return view
