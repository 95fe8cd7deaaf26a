"""Weights in 2 MiB pages (Linux's transparent huge pages). Decoding one token streams every weight from memory,
and in 4 KiB pages that stream pays a TLB miss every 4 KiB, where the hardware prefetchers also stop: SmolLM2's
fp32 weights moved into 2 MiB pages decoded 1.11-1.26x faster compiled (five runs) and 1.08x eager on the 2-core
AMD EPYC, in turns in one process (docs/benchmarks.md). llama.cpp reads its weights from the file's mapping; torch's CPU
allocator asks for huge pages only when THP_MEM_ALLOC_ENABLE is set before its first allocation, which a library
cannot count on, so `huge_page_weights` moves a built model's weights into mappings of its own.

The kernel decides at each page fault: where THP is off (`never`), no 2 MiB page is free, or the system is not
Linux, the memory is ordinary memory and nothing else changes."""
from __future__ import annotations

import functools
import math
import mmap

import torch
from torch import nn

PAGE = 2 << 20  # a huge page on x86-64 and arm64 (with 4 KiB base pages)
MODE = "/sys/kernel/mm/transparent_hugepage/enabled"


@functools.cache
def available() -> bool:
    """Whether a mapping advised MADV_HUGEPAGE can get huge pages here: Linux, THP `always` or `madvise` (read
    once per process: every decoding asks)."""
    if not hasattr(mmap, "MADV_HUGEPAGE"):
        return False
    try:
        with open(MODE) as f:
            return "[never]" not in f.read()
    except OSError:
        return False


def buffer(nbytes: int) -> torch.Tensor:
    """nbytes of zeroed uint8 memory starting on a 2 MiB boundary, its whole 2 MiB pages advised huge (the tail
    past the last whole page is not: a huge page there would hold memory no tensor uses). A private mapping of
    its own (a shared one is shmem, which THP's `madvise` mode leaves in 4 KiB pages), unmapped when the last
    tensor on it goes; the slack before the boundary is address space, never touched."""
    m = mmap.mmap(-1, nbytes + PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    offset = -torch.frombuffer(m, dtype=torch.uint8, count=1).data_ptr() % PAGE
    if nbytes >= PAGE:
        m.madvise(mmap.MADV_HUGEPAGE, offset, nbytes // PAGE * PAGE)
    return torch.frombuffer(m, dtype=torch.uint8, count=nbytes, offset=offset)


def zeros(shape: tuple, dtype: torch.dtype, device: torch.device | str | None = None) -> torch.Tensor:
    """torch.zeros, but on CPU a tensor of 2 MiB or more comes from `buffer` (a mapping's memory is zeroed). For
    the static KV caches, which a compiled step reads whole at every token: SmolLM2 fp32's compiled decoding after
    a 2,048-token prompt ran 1.10x faster with them in huge pages, in turns (eager decoding, which reads the
    filled slots only, 1.00x; docs/benchmarks.md)."""
    device = torch.device(device) if device is not None else torch.get_default_device()
    nbytes = math.prod(shape) * dtype.itemsize
    if device.type != "cpu" or nbytes < PAGE or not available():
        return torch.zeros(shape, dtype=dtype, device=device)
    return buffer(nbytes).view(dtype).view(shape)


@torch.no_grad()
def huge_page_weights(model: nn.Module, min_bytes: int = PAGE) -> int:
    """Move every CPU parameter and buffer whose storage holds at least min_bytes (smaller ones fill no huge page)
    into memory from `buffer`. Values, dtypes, shapes, strides and state-dict names are unchanged, and so are ties:
    tensors that shared a storage share the new one. A storage already on a 2 MiB boundary (moved before) stays,
    so a second call moves nothing. In place (each tensor's `.data`: the Parameters stay the same objects);
    returns the bytes moved. Nothing where huge pages are not available()."""
    if not available():
        return 0
    moved: dict[int, torch.UntypedStorage] = {}
    count = 0
    for t in (*model.parameters(), *model.buffers()):
        if (t.device.type != "cpu" or t.layout != torch.strided or t.is_quantized
                or type(t) not in (torch.Tensor, nn.Parameter)):  # not a subclass's (DTensor) own storage
            continue
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if storage.nbytes() < min_bytes or (key % PAGE == 0 and key not in moved):
            continue
        new = moved.get(key)
        if new is None:
            dest = buffer(storage.nbytes())
            dest.copy_(torch.empty(0, dtype=torch.uint8).set_(storage))
            new = moved[key] = dest.untyped_storage()
            count += storage.nbytes()
        t.data = torch.empty(0, dtype=t.dtype).set_(new, t.storage_offset(), t.shape, t.stride())
    return count
