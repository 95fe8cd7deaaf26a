"""Weight-only quantization of a built model (int8 per channel, round-to-nearest or GPTQ; int4 in groups,
round-to-nearest, HQQ or GPTQ),
its checkpoints, and the kernels it runs on. `llmarch.quant.quantize(model, "int4", group_size=64)`."""
from __future__ import annotations

import torch
from torch import nn

from .apply import weight_bytes
from .linear import Int4Linear, Int8Linear
from .scheme import METHODS, Scheme, is_quantized_dir


def quantize(model: nn.Module, method: str = "int8", group_size: int = 64, head: bool = True,
             compute_dtype: str = "bfloat16", embeddings: bool = False,
             calibration: torch.Tensor | None = None, head_int8: bool = False) -> nn.Module:
    """Quantize the model's weights in place (see apply.py for which layers); returns the model, with its
    Scheme as `model.quantization`. calibration: token ids (S, T) of training text, for "int4-gptq" and "int8-gptq"
    (quant.gptq.calibration_ids draws them from the embedded corpus's training split). head_int8: the LM head
    in int8 whatever the method."""
    from .apply import quantize as _quantize

    scheme = Scheme(method, group_size, head, embeddings, compute_dtype, head_int8)
    _quantize(model, scheme, calibration)
    model.quantization = scheme
    return model


__all__ = ["quantize", "Scheme", "METHODS", "Int8Linear", "Int4Linear", "is_quantized_dir", "weight_bytes"]
