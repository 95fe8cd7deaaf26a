"""Autoregressive decoding: one engine (prefill + cached decode steps over a static cache) and the strategies
over it: greedy and sampled decoding, beam search."""
from .decode import generate, left_pad
from .engine import Engine
from .sampling import sample

__all__ = ["Engine", "generate", "left_pad", "sample"]
