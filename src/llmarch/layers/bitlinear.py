"""BitNet b1.58's BitLinear (Ma et al. 2024, "The Era of 1-bit LLMs: All Large Language Models are in 1.58 Bits",
§2; after Wang et al. 2023, "BitNet", §2.1-2.2): a linear layer whose weights are rounded to {-1, 0, +1} times their
mean absolute value (absmean, eqs. 1-3: W~ = RoundClip(W / (gamma + eps), -1, 1), gamma = mean |W|, one scale per
matrix) and whose inputs are rounded to 8 bits per token (absmax: x~ = round(x * 127 / max|x|) clamped to
[-128, 127]). Both are fake-quantized: the rounded values times their scales, in floating point, as transformers'
AutoBitLinear computes them in its online mode (the weights kept full-precision and quantized at every call, what a
bf16 master checkpoint holds). Training passes gradients straight through the rounding (Bengio et al. 2013, the
straight-through estimator), as the paper trains. Config: bitlinear="online" makes every projection of the blocks'
attention and FFN one (block.py); the embeddings and the LM head stay as they are."""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from .linear import Linear

BITLINEARS = ("none", "online")  # the choices of ModelConfig.bitlinear


class _StraightThrough(torch.autograd.Function):
    """f(x) forward, the identity backward (the straight-through estimator)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, f) -> torch.Tensor:
        return f(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


def absmean_ternary(w: torch.Tensor, rows: list[int] | None = None) -> torch.Tensor:
    """W rounded to {-1, 0, 1} / s, s = 1 / max(mean |W|, 1e-5) (eq. 1-3), computed in fp32; rows: the row blocks
    of a fused projection (q, k, v), each a matrix of the checkpoint with its own scale."""
    if rows is not None:
        return torch.cat([absmean_ternary(piece) for piece in w.split(rows)])
    h = w.float()
    scale = 1.0 / h.abs().mean().clamp(min=1e-5)
    return ((h * scale).round().clamp(-1, 1) / scale).to(w.dtype)


def absmax_int8(x: torch.Tensor) -> torch.Tensor:
    """Each token's vector rounded to 8 bits by its largest magnitude, s = 127 / max(max |x|, 1e-5), in fp32."""
    h = x.float()
    scale = 127 / h.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
    return ((h * scale).round().clamp(-128, 127) / scale).to(x.dtype)


class BitLinear(Linear):
    """y = Q_8(x) Q_1.58(W)^T + b: the same parameters and state-dict names as the Linear it replaces. rows: the
    row blocks of a fused projection, each scaled by its own absmean (the matrices the paper quantizes)."""

    rows: list[int] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self._parameters
        w = _StraightThrough.apply(p["weight"], partial(absmean_ternary, rows=self.rows))
        return F.linear(_StraightThrough.apply(x, absmax_int8), w, p["bias"])


def to_bitlinear(module: nn.Module) -> None:
    """Every Linear inside `module` replaced by a BitLinear holding the same parameters (at construction, before
    any weight is loaded or initialised). A module's `fused_rows` (name -> row blocks) names its fused projections
    (attention's qkv_proj, a GLU's gate_up), whose blocks are quantized apart."""
    fused = getattr(module, "fused_rows", {})
    for name, child in list(module.named_children()):
        if type(child) is Linear:
            new = BitLinear(child.in_features, child.out_features, bias=child.bias is not None, device="meta")
            new.weight, new.bias, new.rows = child.weight, child.bias, fused.get(name)
            setattr(module, name, new)
        else:
            to_bitlinear(child)
