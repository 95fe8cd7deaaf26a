"""A GGUF file's block-quantized matrices kept quantized in memory, on llmarch's own int4/int8 kernels (quant/),
instead of dequantized to fp32.

Which llama.cpp types the kernels hold (llama.cpp's ggml-quants.c defines the blocks; quant/linear.py the kernels):
- Q4_1 (per 32 weights: w = d q + m, q in 0..15) is int4 in groups of 32 with scale d and zero m + 8 d, and Q4_0
  (w = d (q - 8)) the same with zero 0: the codes are the file's own, since round-to-nearest on the dequantized
  block finds them again (tests/parity/test_gguf.py). The scales and zeros are stored in the kernel's compute
  dtype (bf16), rounded from the file's fp16: that rounding, and bf16 activations, are what this costs.
- Q8_0 (per 32 weights: w = d q, q in -127..127) has a scale per 32 weights; the int8 kernel one per output
  channel, so Q8_0 matrices are re-quantized to int8 per channel.
- The token embedding goes to int8 per row (quant/linear.py's Int8Embedding) when the file stores it quantized,
  and the LM head (a tied one is the embedding table, as llama.cpp reads it) to int8 per channel when the file's
  is not Q4_0/Q4_1: an int4 copy of SmolLM2's Q8_0 table would cost 5% perplexity (docs/quantization.md).
Files of other types (F16, BF16, the K-quants, a mix), and mixtures of experts (stacked 3-D tensors), have no
kernel of their own here: they are dequantized.
Each layer is quantized as soon as its tensors are read (QuantizeAsRead), so loading holds one dequantized matrix at
a time beside the quantized ones, not the fp32 model."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import LlmarchError
from ..quant import Scheme
from ..quant.linear import Int8Embedding

INT4_TYPES = frozenset({"Q4_0", "Q4_1"})  # held by int4 at group 32 with the file's own codes
INT8_TYPES = frozenset({"Q8_0"})  # re-quantized to int8 per output channel
FLOAT_TYPES = frozenset({"F32", "F16", "BF16"})
EMBEDDING, HEAD = "token_embd.weight", "output.weight"


def file_scheme(reader) -> Scheme | None:
    """The llmarch scheme that holds the file's matrices (the token embedding and LM head apart); None where
    they are float, K-quants or a mix, which stay dequantized."""
    if any(len(t.shape) > 2 for t in reader.tensors):  # stacked experts (ffn_*_exps): no kernel holds them here
        return None
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    kinds = {types[t.name] for t in reader.tensors if len(t.shape) == 2 and t.name not in (EMBEDDING, HEAD)}
    embedding = types.get(EMBEDDING, "F32")
    head = types.get(HEAD, embedding)  # no output.weight: the head is the embedding table (tied)
    if kinds and kinds <= INT4_TYPES:
        method = "int4"
    elif kinds and kinds <= INT8_TYPES:
        method = "int8"
    else:
        return None
    return Scheme(method, group_size=32, head=True, embeddings=embedding not in FLOAT_TYPES,
                  head_int8=method == "int4" and head not in INT4_TYPES)


def from_gguf_kernels(path: str | Path, device=None):
    """The model of a .gguf file with its Q4_0/Q4_1/Q8_0 matrices on llmarch's int4/int8 kernels (see above);
    a file of other types comes back dequantized, as `from_gguf` gives it. The scheme is `model.quantization`."""
    from .gguf import from_gguf, open_gguf

    scheme = file_scheme(open_gguf(path))
    if scheme is None:
        return from_gguf(path, device=device)
    model = from_gguf(path, device=device, take=QuantizeAsRead(scheme, path))
    model.quantization = scheme
    return model


class QuantizeAsRead:
    """hf.build_from's `take`: each linear layer the scheme quantizes is built from its weight (and bias) the
    moment they are read, and the fp32 tensors are dropped, so loading holds one dequantized matrix at a time
    beside the quantized ones (the same layers quant.apply.quantize makes from a loaded model). The embedding
    table, when the scheme quantizes it, and a tied head are made from the embedding's tensor."""

    def __init__(self, scheme: Scheme, source):
        from ..quant.apply import layer_maker

        self.scheme, self.source = scheme, source
        self.make = layer_maker(scheme, meta=False)
        self.targets: set[str] | None = None
        self.pending: dict[str, dict[str, torch.Tensor]] = {}

    def __call__(self, model: nn.Module, name: str, tensor: torch.Tensor) -> bool:
        from ..quant.apply import check_widths, targets

        if self.targets is None:  # on the first tensor: the meta model's layers the scheme quantizes
            check_widths(model, self.scheme)
            found = dict(targets(model, self.scheme))
            if any(not isinstance(m, nn.Linear) for m in found.values()):
                raise LlmarchError(f"{self.source}: experts are not read onto the kernels; use from_gguf and quantize")
            self.targets = set(found)
        if name == "embed.weight":
            if "lm_head" in self.targets and model.config.tied_head:  # the head is the table: its own copy
                model.lm_head = self.make("lm_head", tensor, None)
            if self.scheme.embeddings:
                model.embed = Int8Embedding.from_embedding(nn.Embedding.from_pretrained(tensor))
            return self.scheme.embeddings
        layer, _, part = name.rpartition(".")
        if layer not in self.targets or part not in ("weight", "bias"):
            return False
        parts = self.pending.setdefault(layer, {})
        parts[part] = tensor
        module = model.get_submodule(layer)
        if "weight" in parts and ("bias" in parts or module.bias is None):
            parent, _, child = layer.rpartition(".")
            setattr(model.get_submodule(parent), child, self.make(layer, parts["weight"], parts.get("bias")))
            del self.pending[layer]
        return True
