"""nn.Linear for one row at a time on a multi-core CPU: the product split in two halves, one per core, where
the machine's BLAS would otherwise run it on one.

Decoding one token at batch 1 makes every linear layer a matrix-vector product, whose time is the weight read.
Whether the BLAS spreads such a product over the cores depends on the CPU it finds: MKL on the AMD EPYC VMs of
docs/benchmarks.md ran it on one core, at about half of what two cores read (6-21 GB/s against 42 GB/s for a
two-thread sum over the same bytes), while on the Intel Xeon VM it runs on both, and the split below is then
5-15% slower per matrix than F.linear. `split_pays` measures which holds on the machine at hand, once per
process and thread count; `transforms.for_cpu_decoding` applies the split only where it does.
Written as one batched matmul of two halves, the halves run on two cores. Which halves depends on how the
weight is stored, so that each half is one contiguous block of it:
- (k, n), transposed_weight_layout's widening weights: the contraction split (split-K, as GEMM libraries do),
  y = x[:k/2] W[:, :k/2]^T + x[k/2:] W[:, k/2:]^T, the two partial sums then added;
- (n, k), nn.Linear's own: the outputs split, y = [x W[:n/2]^T, x W[n/2:]^T], nothing to add.
Every other input (training batches, prefill, several rows, autograd on) takes nn.Linear's own path.
Inside torch.compile (the compiled decode step) a one-row product over nn.Linear's (n, k) layout is written as
what it is, (W * x).sum(-1), which inductor turns into a dot-product loop of its own, threaded over the outputs,
each thread streaming its rows: on the AMD EPYC that read SmolLM2's weights at 24-28 GB/s against 18-27 for the
split above, whose layouts suit the BLAS rather than this loop (`for_cpu_decoding(compiled=True)` keeps every
weight (n, k)). Left to F.linear, inductor calls the BLAS's one-core product: SmolLM2 fp32 decoded compiled at
21.9 tokens/s that way, against 34 eager (docs/benchmarks.md). A (k, n) weight in a compiled graph (a model laid
out for eager decoding, then compiled by its user) takes the split as `baddbmm`, which inductor leaves to the
BLAS (a one-row `bmm` it lowers to a loop of its own, slower for that layout)."""
from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn


class SplitLinear(nn.Linear):
    """An nn.Linear sharing the weight and bias Parameters of the one it replaces (ties and state-dict names
    stay as they were); only a single fp32 row on a CPU with two or more threads, with autograd off (decoding
    runs under inference_mode), takes the split path."""

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> SplitLinear:
        new = cls(linear.in_features, linear.out_features, bias=linear.bias is not None, device="meta")
        new.weight, new.bias = linear.weight, linear.bias
        new.train(linear.training)
        new._forward_pre_hooks, new._forward_hooks = linear._forward_pre_hooks, linear._forward_hooks
        if hasattr(linear, "quantize"):  # a layer that must stay in float (latent attention's kv_b_proj: quant/apply)
            new.quantize = linear.quantize
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the Parameters straight from their dict: nn.Module's attribute fallback costs more than the rest of
        # this check, at every layer of every decoded token
        w, b = self._parameters["weight"], self._parameters["bias"]
        if torch.compiler.is_compiling():  # first: dynamo cannot trace get_num_threads or the cached plan
            if x.numel() == self.in_features and x.dtype == torch.float32 and not torch.is_grad_enabled():
                return _compiled_split(x, w, b)
            return F.linear(x, w, b)
        if (x.numel() != self.in_features or x.dim() != 3 or x.dtype != torch.float32
                or torch.get_num_threads() < 2
                or torch.is_grad_enabled()):  # inference only: the cached views below carry no autograd history
            return F.linear(x, w, b)
        plan = self._plan(w, b)
        if plan is None:
            return F.linear(x, w, b)
        halves, bias = plan
        # each path is as few ops as it can be: at batch 1 every op's dispatch is paid 4 times per layer
        if halves.shape[1] == self.in_features:  # outputs split: (2, 1, n/2) is y in order
            y = torch.baddbmm(bias, x.expand(2, 1, -1), halves) if bias is not None else torch.bmm(
                x.expand(2, 1, -1), halves)
            return y.view(1, 1, -1)
        # contraction split: two partial sums (2, 1, n), the bias in the first, summed
        y = torch.baddbmm(bias, x.reshape(2, 1, -1), halves) if bias is not None else torch.bmm(
            x.reshape(2, 1, -1), halves)
        return y[0].add_(y[1]).view(1, 1, -1)  # (cheaper than a sum over dim 0, a reduction's set-up)

    def _plan(self, w: torch.Tensor, b: torch.Tensor | None) -> tuple | None:
        """(halves, bias): the weight as two (k/2, n) or (k, n/2) blocks, (2, ., .), a view: split-K for a (k, n)
        weight, split outputs for an (n, k) one; and the bias laid out to add inside the same product: (2, 1, n/2),
        its two halves, for split outputs; (2, 1, n), the bias then zeros, for split-K, whose two partial sums
        are then summed. None off the CPU, for an odd split dimension, or a weight in neither layout.
        Kept while the weight and bias keep their storage (the views hold it, so a new .data, as a layout change
        gives, has another address; the split-K bias is a copy, so its values are checked with the address);
        .to() and the like drop it (_apply), so no old storage outlives them."""
        key = (w.data_ptr(), None if b is None else b.data_ptr(), None if b is None else b._version)
        cached = self.__dict__.get("_split")
        if cached is not None and cached[0] == key:
            return cached[1]
        k, n = self.in_features, self.out_features
        plan = None
        if w.device.type == "cpu":
            bias = None if b is None else b.detach()
            if w.t().is_contiguous() and k % 2 == 0:
                halves = w.detach().t().view(2, k // 2, n)
                plan = halves, None if bias is None else torch.stack((bias, torch.zeros_like(bias)))[:, None]
            elif w.is_contiguous() and n % 2 == 0:
                plan = w.detach().view(2, n // 2, k).transpose(1, 2), None if bias is None else bias.view(2, 1, -1)
        self.__dict__["_split"] = (key, plan)
        return plan

    def _apply(self, fn, recurse=True):
        self.__dict__.pop("_split", None)
        return super()._apply(fn, recurse)


def _compiled_split(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """SplitLinear's product of one row as a compiled graph computes it, by the weight's layout, decided while
    tracing (dynamo guards the strides). A SplitLinear exists only where split_pays held."""
    n, k = w.shape
    if w.is_contiguous():  # (n, k): inductor's own dot products, one per output row
        y = (w * x.reshape(1, k)).sum(-1)
        return (y if b is None else y + b).reshape(*x.shape[:-1], n)
    row = x.reshape(1, 1, k)
    if w.t().is_contiguous() and k % 2 == 0:  # (k, n) storage: split-K, the partial sums added
        y = torch.baddbmm(row.new_zeros(()), row.view(2, 1, k // 2), w.t().view(2, k // 2, n), beta=0)
        y = y[0] + y[1] if b is None else y[0] + y[1] + b
        return y.reshape(*x.shape[:-1], n)
    return F.linear(x, w, b)


_PAYS: dict[int, bool] = {}  # thread count -> whether the split path beat F.linear in split_pays' probe


def split_pays() -> bool:
    """Whether, on this CPU at torch's current thread count, one-row products run faster split (transposed
    layout for widening weights, then SplitLinear) than through F.linear on nn.Linear's own layout. Measured
    once per process and thread count, on weights of decoder-sized shapes (a widening and a narrowing one) that
    together outgrow the L2 caches, as a model's weights do, in alternating rounds: the split must win the
    median round by 5% (it won by 20-50% where the BLAS ran one row on one core; where the BLAS threads it,
    F.linear wins by 5-15%). Takes about 0.1 s, on the CPU only."""
    threads = torch.get_num_threads()
    if threads < 2:
        return False
    if threads not in _PAYS:
        # plain tensors even inside generate's inference mode: SplitLinear checks its bias's version counter
        with torch.inference_mode(False), torch.no_grad():
            _PAYS[threads] = _probe()
    return _PAYS[threads]


def _probe(copies: int = 4, rounds: int = 7) -> bool:
    plain, split = [], []
    for k, n in ((512, 2048), (2048, 512)):
        for _ in range(copies):  # 8 MB of each shape: beyond the L2 caches, as a model's layers are
            linear = nn.Linear(k, n, device="meta")
            linear.weight = nn.Parameter(torch.full((n, k), 1e-3), requires_grad=False)
            linear.bias = nn.Parameter(torch.zeros(n), requires_grad=False)
            plain.append(linear)
            wide = SplitLinear.from_linear(linear)
            if n > k:  # stored as transposed_weight_layout stores widening weights
                wide.weight = nn.Parameter(linear.weight.t().contiguous().t(), requires_grad=False)
            split.append(wide)
    xs = {k: torch.full((1, 1, k), 1e-2) for k in (512, 2048)}

    def run(layers) -> float:
        start = time.perf_counter()
        for layer in layers:
            layer(xs[layer.in_features])
        return time.perf_counter() - start

    run(plain), run(split)  # warm-up: first-touch page faults, thread pools
    ratios = [run(plain) / run(split) for _ in range(rounds)]
    return statistics.median(ratios) > 1.05
