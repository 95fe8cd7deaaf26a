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
Files of other types (F16, BF16, the K-quants, a mix) have no kernel of their own here: they are dequantized.
The fp32 model is read first (so loading peaks at its size), then quantized in place, layer by layer."""
from __future__ import annotations

from pathlib import Path

from ..quant import Scheme, quantize

INT4_TYPES = frozenset({"Q4_0", "Q4_1"})  # held by int4 at group 32 with the file's own codes
INT8_TYPES = frozenset({"Q8_0"})  # re-quantized to int8 per output channel
FLOAT_TYPES = frozenset({"F32", "F16", "BF16"})
EMBEDDING, HEAD = "token_embd.weight", "output.weight"


def file_scheme(reader) -> Scheme | None:
    """The llmarch scheme that holds the file's matrices (the token embedding and LM head apart); None where
    they are float, K-quants or a mix, which stay dequantized."""
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
    model = from_gguf(path, device=device)
    if scheme is None:
        return model
    return quantize(model, scheme.method, scheme.group_size, head=scheme.head, compute_dtype=scheme.compute_dtype,
                    embeddings=scheme.embeddings, head_int8=scheme.head_int8)
