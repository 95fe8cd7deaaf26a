"""Autoregressive decoding: prefill + incremental decode over the static KV cache, with samplers."""
from .decode import generate, left_pad
from .sampling import sample

__all__ = ["generate", "left_pad", "sample"]
