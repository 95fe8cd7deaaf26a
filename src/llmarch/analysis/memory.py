"""Peak memory of running a function: on CUDA the caching allocator's own high-water mark; elsewhere the most
bytes held at once by live tensor storages, counted by a dispatch mode.

The CPU allocator keeps no statistics, and the process's resident size mixes in the interpreter, the libraries
and memory malloc has not returned, so on CPU we count what the model's arithmetic holds: every storage an op
creates while `fn` runs, from its creation until its last reference (a view, a saved activation, a gradient)
dies, plus the storages already alive that `fn` is given (parameters, optimizer state). This is the figure
`torch.cuda.max_memory_allocated` approximates on a GPU, without the allocator's rounding and fragmentation."""
from __future__ import annotations

import weakref
from typing import Callable, Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class _LiveBytes(TorchDispatchMode):
    """Counts the bytes of storages, live and at their peak: those it is given, and those ops create under it.
    torch keeps one Python object per storage for as long as the storage lives (autograd's saved tensors
    included), so a finalizer on that object says when its bytes are freed."""

    def __init__(self, held: Iterable[torch.Tensor] = ()):
        super().__init__()
        self.alive: set[int] = set()
        self.now = self.peak = 0
        self._track(held)

    def _track(self, out) -> None:
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                key = id(storage)
                if key not in self.alive and storage.nbytes():
                    self.alive.add(key)
                    self.now += storage.nbytes()
                    weakref.finalize(storage, self._free, key, storage.nbytes())
        self.peak = max(self.peak, self.now)

    def _free(self, key: int, nbytes: int) -> None:
        self.alive.discard(key)
        self.now -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self._track(out)
        return out


def peak_bytes(fn: Callable[[], object], held: Iterable[torch.Tensor] = (),
               device: torch.device | None = None) -> int:
    """The most bytes of tensor memory in use at once while `fn()` runs. `held`: tensors alive throughout (a
    model's parameters and gradients, an optimizer's state), counted once. CUDA: the allocator's peak, which
    counts them by itself."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device)
    with _LiveBytes(held) as mode:
        fn()
    return mode.peak


def training_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> list[torch.Tensor]:
    """The tensors a training step holds throughout: parameters, their gradients, the optimizer's state."""
    held = [p for p in model.parameters()] + [p.grad for p in model.parameters() if p.grad is not None]
    if optimizer is not None:
        held += [v for state in optimizer.state.values() for v in state.values()
                 if isinstance(v, torch.Tensor) and v.numel() > 1]
    return held
