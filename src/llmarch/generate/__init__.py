"""Autoregressive decoding: prefill + incremental decode over the static KV cache, with samplers."""
from .decode import generate, left_pad
from .sampling import sample
from .text import generate_text

__all__ = ["generate", "generate_text", "left_pad", "sample"]
