"""Transforms applied to a built model, outside the model code (compile, precision, layouts; later
FSDP/DDP, activation checkpointing, quantization, LoRA), in this order: layout, precision, compile."""
from __future__ import annotations

import torch
from torch import nn


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
            module.weight.data = module.weight.data.t().contiguous().t()
    return model


def compiled_decode_step(model: nn.Module, mode: str | None = None):
    """The model's one-token decode step compiled as one fixed-shape graph (as in gpt-fast): (tok (B, 1),
    slot (1,), mask (B, S) or None) -> logits (B, 1, V), attending over the whole static KV cache with the
    causal mask, so every position reuses the same graph. mode None: "reduce-overhead" on CUDA (CUDA graphs:
    the step replays with no per-kernel launch cost), inductor's default elsewhere. Built once per model and
    kept on it; compiling takes seconds to minutes, so it pays off only for long or repeated generation."""
    step = model.__dict__.get("_compiled_decode_step")
    if step is None:
        device = next(model.parameters()).device
        mode = mode or ("reduce-overhead" if device.type == "cuda" else "default")
        step = torch.compile(lambda tok, slot, mask: model(tok, attention_mask=mask, input_pos=slot).logits,
                             fullgraph=True, dynamic=False, mode=mode)
        model.__dict__["_compiled_decode_step"] = step
    return step
