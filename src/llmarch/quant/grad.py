"""The input gradient of a frozen quantized linear layer, which torch's int4 and int8 weight-only kernels lack:
dL/dx = dL/dy W. QLoRA (Dettmers et al. 2023, §3) trains adapters below and above frozen 4-bit weights, so the
gradient has to pass through those weights to reach the layers beneath them. Backward dequantizes W a slice of
input columns at a time (about COLUMN_BYTES of it at once) and forgets each slice after its product: no
full-precision copy of a weight is kept from forward to backward (a dequantize-then-matmul forward would have
autograd keep one per layer) nor outlives the slice's product. The weights get no gradient: they are buffers.
Shapes: x (M, K) and W (N, K) in the layer's compute dtype; y (M, N)."""
from __future__ import annotations

import torch

# a dequantized slice of a weight in backward: about 1 MiB in a 2-byte compute dtype (its fp32 intermediates
# twice that), but never less than one group of columns
COLUMN_BYTES = 1 << 20


class _FrozenProduct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, layer) -> torch.Tensor:
        ctx.layer = layer
        return layer.product(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return input_grad(ctx.layer, grad), None


def product(layer, x: torch.Tensor) -> torch.Tensor:
    """layer.product(x), differentiable in x when x needs a gradient."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _FrozenProduct.apply(x, layer)
    return layer.product(x)


def input_grad(layer, grad: torch.Tensor) -> torch.Tensor:
    """grad (M, N) -> (M, K) = grad W, W's columns dequantized by layer.columns(start, stop) (N, stop - start)."""
    K, N = layer.in_features, layer.out_features
    group = getattr(layer, "group_size", 1)  # int4: slices hold whole groups (int8: any columns)
    step = max(group, COLUMN_BYTES // (2 * N) // group * group)
    out = grad.new_empty(grad.shape[0], K)
    for start in range(0, K, step):
        stop = min(K, start + step)
        columns = layer.columns(start, stop)
        out[:, start:stop] = grad.to(columns.dtype) @ columns
    return out
