"""QLoRA (Dettmers et al. 2023, "QLoRA: Efficient Finetuning of Quantized LLMs", eq. 5): LoRA over a frozen
quantized weight, Y = X dequant(W_q)^T + s X A^T B^T. The layer stays what quantization made it (quant/linear.py:
an Int4Linear's packed codes, scales and zeros, or an Int8Linear for layers int4 cannot hold), runs its own
kernel, and passes gradients to its input through the frozen weights (quant/grad.py); only A and B train. Not
the paper's NF4 data type or double quantization: the base is issue 15's int4 (round-to-nearest or HQQ, groups
of G input columns with a scale and a zero each).

Merging is refused. Folding s B A into the codes means re-quantizing W + s B A, which rounds away every part of
the update smaller than half a quantization step of its group; a merge into a dequantized full-precision weight
gives the full-precision model that QLoRA exists to avoid holding. The adapters stay beside the int4 weights:
in the model, in its checkpoints (checkpoint.py writes them unmerged, with adapters.json naming where they sit),
and as a PEFT adapter for the full-precision base. Only an export to a float checkpoint (interop/hf.py's to_hf)
merges them, into float copies of the dequantized weights (quant/dequantize.py)."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import LlmarchError
from ..quant.linear import Int4Linear, Int8Linear
from .lora import LoRAUpdates

QUANTIZED = (Int4Linear, Int8Linear)


class LoRAQuantized(LoRAUpdates):
    """Adapters over a quantized linear layer, sharing its buffers (so the state-dict names of the base, `qweight`,
    `scales`, `zeros`, `bias`, stay as they were, and no tensor of it is copied)."""

    @classmethod
    def wrap(cls, layer: nn.Module, slices: dict[str, tuple[int, int]], rank: int, alpha: float,
             dropout: float = 0.0, rslora: bool = False, per_slice: dict[str, tuple[int, float]] | None = None,
             dtype: torch.dtype = torch.float32) -> LoRAQuantized:
        """dtype: the adapters' (the model's full-precision parameters'; the kernels' compute dtype is the
        base's own concern)."""
        new = _sharing(WRAPPERS[type(layer)], layer)
        new.add_adapters(slices, rank, alpha, dropout, rslora, per_slice, next(layer.buffers()).device, dtype)
        return new.train(layer.training)

    def unwrap(self) -> nn.Module:
        """The quantized layer (the same buffers) without its adapters."""
        return _sharing(self.base_type, self).train(self.training)

    def merge(self) -> None:
        raise LlmarchError("a LoRA adapter over quantized weights cannot be merged: re-quantizing W + sBA would "
                           "round away every change smaller than half a quantization step; keep it unmerged")

    def unmerge(self) -> None:
        """Never merged: nothing to do."""


class LoRAInt4Linear(LoRAQuantized, Int4Linear):
    base_type = Int4Linear
    base_forward = Int4Linear.forward

    def extra_repr(self) -> str:
        return f"{Int4Linear.extra_repr(self)}, LoRA ranks={self.ranks} scalings={self.scalings}"


class LoRAInt8Linear(LoRAQuantized, Int8Linear):
    base_type = Int8Linear
    base_forward = Int8Linear.forward

    def extra_repr(self) -> str:
        return f"{Int8Linear.extra_repr(self)}, LoRA ranks={self.ranks} scalings={self.scalings}"


WRAPPERS = {Int4Linear: LoRAInt4Linear, Int8Linear: LoRAInt8Linear}
ADAPTER_FIELDS = {"slices", "ranks", "alphas", "scalings", "merged", "enabled", "lora_magnitude"}


def _sharing(cls: type, layer: nn.Module) -> nn.Module:
    """A `cls` holding `layer`'s buffers (the same tensors, same names) and settings (widths, group size, the
    tiles flag), its forward hooks, and no adapters."""
    new = cls.__new__(cls)
    nn.Module.__init__(new)
    own = set(vars(new))
    for key, value in vars(layer).items():
        if key not in own and key not in ADAPTER_FIELDS:
            object.__setattr__(new, key, value)
    for name, buffer in layer._buffers.items():
        new.register_buffer(name, buffer, persistent=name not in layer._non_persistent_buffers_set)
    new._forward_pre_hooks, new._forward_hooks = layer._forward_pre_hooks, layer._forward_hooks
    return new
