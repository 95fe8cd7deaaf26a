"""Transforms applied to a built model, outside the model code, so models stay plain single-device modules.
For inference: layout (on CPU, `for_cpu_decoding`), precision, compile, in that order. For training
(`for_training`), torchtitan's order: activation checkpointing, compile, data parallelism (DDP, or FSDP2 per
block then the root)."""
from __future__ import annotations

import torch
from torch import nn

from .errors import LlmarchError
from .models.build import stacks
from .layers.linear import Linear
from .layers.split_linear import SplitLinear, split_pays
from .huge_pages import huge_page_weights, zeros


def blocks(model: nn.Module) -> list[nn.Module]:
    """Every block of every stack (an encoder-decoder's encoder blocks, then its decoder blocks)."""
    return [block for stack, _ in stacks(model).values() for block in stack.blocks]


def checkpoint_activations(model: nn.Module) -> nn.Module:
    """Activation checkpointing per block (Chen et al. 2016, "Training deep nets with sublinear memory cost"):
    a block keeps only its input for backward and recomputes the rest then: about one more forward pass of
    compute, for activation memory of one tensor per block plus one block's internals at a time. Applied in
    place with forward hooks, so parameter and state-dict names do not change; dropout masks are replayed
    exactly (the RNG state is restored for the recomputation)."""
    from torch.distributed._composable import checkpoint

    for block in blocks(model):
        checkpoint(block)
    return model


def fully_shard_blocks(model: nn.Module, device: torch.device) -> nn.Module:
    """FSDP2 (torch.distributed.fsdp.fully_shard) over all processes: each block's parameters are one group,
    all-gathered just before the block runs and freed after it (and again for backward, whose gradients are
    reduce-scattered), so a process holds 1/world of the weights, gradients and optimizer state plus the
    blocks it is computing (and prefetching) in full; the root takes what is left (embeddings, a tied head
    with them, final norm). On CUDA the blocks
    compute in bf16 while the sharded weights and the gradient reduction stay fp32. Sharded in place: the model
    is still the module to call."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    try:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    except ImportError:  # the package asks for torch>=2.4; FSDP2's public API arrived in 2.6
        from .errors import LlmarchError

        raise LlmarchError(f"--parallel fsdp needs torch 2.6 or later (FSDP2), this is {torch.__version__}; "
                           "use --parallel ddp") from None

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    cuda = device.type == "cuda"
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if cuda else None, reduce_dtype=torch.float32)
    for block in blocks(model):
        fully_shard(block, mesh=mesh, mp_policy=mp)
    return fully_shard(model, mesh=mesh, mp_policy=mp)


def for_training(model: nn.Module, parallel: str | None, device: torch.device, checkpointing: bool = False,
                 compile: bool = False) -> nn.Module:
    """The module to call for training steps. parallel None: the model itself; "ddp": a DistributedDataParallel
    wrapper (a full replica per process, gradients averaged by all-reduce during backward); "fsdp":
    `fully_shard_blocks`. compile: the whole model (the DDP wrapper, which splits its graph at the gradient
    buckets), or under FSDP each block before it is sharded, so the sharding hooks stay outside the graphs."""
    if parallel == "fsdp" and getattr(getattr(model, "config", None), "reversible_backward", False):
        raise LlmarchError("reversible_backward runs each block's sublayers itself, past the hooks FSDP gathers a "
                           "block's shards with: train it with DDP, or without reversible_backward")
    if checkpointing:
        checkpoint_activations(model)
    if parallel == "fsdp":
        if compile:
            for block in blocks(model):
                block.compile()
        return fully_shard_blocks(model, device)
    if parallel == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return torch.compile(model) if compile else model


def linear_bytes(model: nn.Module) -> int:
    """Bytes of the model's float linear weights (each tensor once): what a decoded token reads through them."""
    weights = {id(m.weight): m.weight for m in model.modules() if isinstance(m, nn.Linear)}
    return sum(w.numel() * w.element_size() for w in weights.values())


@torch.no_grad()
def transposed_weight_layout(model: nn.Module) -> nn.Module:
    """Store each widening nn.Linear weight (out > in: q/k/v, FFN up, LM head) column-major, i.e. as a
    transposed view of a contiguous (in, out) tensor. Shapes, values and state-dict names are unchanged; what
    changes is the matmul kernel: for one token at a time (batch-1 decoding) x @ W^T then reads W^T row by row,
    which on the CPUs we measured runs up to 2x faster than the (out, in) kernel for those shapes, and slower
    for narrowing ones (FFN down: out < in), which keep their layout (docs/benchmarks.md). Training speed is
    unchanged. State-dict tensors become non-contiguous: use .reshape, not .view, on them."""
    for module in model.modules():
        widening = isinstance(module, nn.Linear) and module.out_features > module.in_features
        if widening and module.weight.is_contiguous():
            module.weight.data = _copy(module.weight.data.t()).t()
    return model


@torch.no_grad()
def row_major_layout(model: nn.Module) -> nn.Module:
    """Undo transposed_weight_layout: every nn.Linear weight stored (out, in), contiguous. In place."""
    for module in model.modules():
        if isinstance(module, nn.Linear) and not module.weight.is_contiguous():
            module.weight.data = _copy(module.weight.data)
    return model


def _copy(t: torch.Tensor) -> torch.Tensor:
    """t contiguous, in huge pages where it fills one (huge_pages.zeros): for_cpu_decoding moves such weights there
    after laying them out, which would otherwise copy each a second time at every switch of layout."""
    out = zeros(tuple(t.shape), t.dtype, t.device)
    return out.copy_(t)


# Float linear weights beyond which a decoded token streams them from memory rather than cache, and the
# transposed layout of widening weights pays even where the BLAS threads one-row products itself. On the Intel
# Xeon VM of docs/benchmarks.md (SmolLM2-shaped layers, 2 threads, in turns): 113-538 MB of weights ran 1.04-1.09x
# faster with it, SmolLM2's fp32 decoding 1.06x; at 28-57 MB (within its cache) 0.99-1.09x, and gpt-tiny's
# decoding (33 MB) 2% slower, so smaller models keep nn.Linear's layout there.
STREAMED_BYTES = 100 * 10**6


def for_cpu_decoding(model: nn.Module, split: bool | None = None, compiled: bool = False) -> nn.Module:
    """What `llmarch generate` and `llmarch bench` apply to a model that decodes on CPU. Where one-row products
    run faster split over two cores (split None: as `split_pays` measures on this machine; True/False: decided
    by the caller): every nn.Linear replaced by a SplitLinear sharing its Parameters, laid out for how the steps
    will run: eager (compiled False), transposed_weight_layout, whose (in, out) widening weights the split reads
    fastest; a compiled step of one row, every weight (out, in), nn.Linear's own, which the compiled graph's dot
    products read fastest (split_linear.py; a compiled batch goes to the BLAS on the eager layout). A model that
    switches between the two is laid out anew each time (one copy of its widening weights, made in huge pages).
    Where the BLAS already spreads a one-row product over the cores (MKL on the Intel VM of docs/benchmarks.md),
    the linear layers stay nn.Linear, and only a model whose float linear weights exceed STREAMED_BYTES gets the
    transposed layout. Then every weight of 2 MiB or more is moved into huge pages (huge_pages.py: a decoded token
    streams them). Values, state-dict names and ties are unchanged; batch-1 decoding is faster, other inputs take
    nn.Linear's path. A model on another device, or in a process group (its parameters are then DDP's replicas or
    FSDP's shards, laid out as those keep them), is returned untouched. In place; returns the model."""
    if next(model.parameters()).device.type != "cpu" or torch.distributed.is_initialized():
        return model
    pays = split_pays() if split is None else split
    if compiled and pays:
        row_major_layout(model)
    elif pays or linear_bytes(model) > STREAMED_BYTES:
        transposed_weight_layout(model)
    huge_page_weights(model)
    if not pays:
        return model
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) in (nn.Linear, Linear):
                setattr(parent, name, SplitLinear.from_linear(child))
    return model
