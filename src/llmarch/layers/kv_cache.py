"""A static, preallocated key/value cache written at given positions (as in gpt-fast): its shapes never
change during decoding, so torch.compile and CUDA graphs can capture the decode step."""
from __future__ import annotations

import torch
from torch import nn

from ..huge_pages import zeros


class KVCache(nn.Module):
    by_slot = True  # all it holds is indexed by slot: decoding can rewind by moving back (speculative decoding)
    is_ring = False  # a sliding window's ring of its last slots (ring_cache.py)

    def __init__(self, batch: int, n_kv_heads: int, max_len: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device | str | None = None, v_dim: int | None = None):
        """v_dim: each value head's width (the layer's v_dim, attention.attention_setup); None: head_dim."""
        super().__init__()
        shape = (batch, n_kv_heads, max_len, head_dim)  # (on CPU, large ones in huge pages: huge_pages.zeros)
        self.register_buffer("k", zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", zeros(shape[:3] + (v_dim or head_dim,), dtype=dtype, device=device),
                             persistent=False)

    @property
    def max_len(self) -> int:
        return self.k.shape[2]

    @property
    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() + self.v.numel() * self.v.element_size()

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        """Write k, v (B, Hkv, T, D and v_dim) at slots input_pos (T,); return the whole cache (B, Hkv, S, ...)."""
        cache_k, cache_v = self._buffers["k"], self._buffers["v"]  # not nn.Module's slower attribute fallback
        if k.dtype != cache_k.dtype:  # a no-op .to() still costs a dispatch, per layer and token
            k, v = k.to(cache_k.dtype), v.to(cache_v.dtype)
        cache_k.index_copy_(2, input_pos, k)
        cache_v.index_copy_(2, input_pos, v)
        return cache_k, cache_v

    def reorder(self, rows: torch.Tensor) -> None:
        """Row r now holds what row rows[r] held (beam search keeps the caches of the surviving beams)."""
        self.k = self.k.index_select(0, rows)
        self.v = self.v.index_select(0, rows)

    def put_row(self, row: int, src: "KVCache", start: int, length: int) -> None:
        """Row `row` takes src's row 0, its first `length` slots written at slots start.. (continuous batching,
        generate/batch.py: a request prefilled alone joins the running batch, its earlier slots padding)."""
        self.k[row, :, start:start + length] = src.k[0, :, :length]
        self.v[row, :, start:start + length] = src.v[0, :, :length]

    def rows(self, n: int) -> "KVCache":
        """The first n rows, sharing this cache's memory (continuous batching decodes only the rows in use)."""
        view = KVCache(0, 0, 0, 0, self.k.dtype, "meta")
        view.k, view.v = self.k[:n], self.v[:n]
        return view

    def shift(self, n: int) -> None:
        """Every row's slot s + n moves to slot s (n < 0: to the right); the slots left behind are stale,
        and masked as padding or as the future by whoever moves them."""
        for t in (self.k, self.v):
            t.copy_(t.roll(-n, dims=2))


class SharedKV(nn.Module):
    """The decode state of a layer that attends over an earlier layer's keys and values (kv_shared_layers; Gemma 3n
    and Gemma 4): that layer's cache, read, never written (that layer wrote the same keys earlier in the step) nor
    moved, so beam search, continuous batching and the byte count act on it once, through its owner."""

    def __init__(self, src: KVCache):
        super().__init__()
        object.__setattr__(self, "src", src)  # not a submodule: the owner's layer holds it

    by_slot = property(lambda self: self.src.by_slot)
    is_ring = property(lambda self: self.src.is_ring)
    max_len = property(lambda self: self.src.max_len)
    nbytes = 0

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        return self.src.k, self.src.v

    def key_mask(self, pad_mask: torch.Tensor | None, kv_len: int) -> torch.Tensor:
        return self.src.key_mask(pad_mask, kv_len)

    def reorder(self, rows: torch.Tensor) -> None:
        pass

    def put_row(self, row: int, src, start: int, length: int) -> None:
        pass

    def shift(self, n: int) -> None:
        pass

    def rows(self, n: int) -> "SharedKV":
        return SharedKV(self.src.rows(n))
