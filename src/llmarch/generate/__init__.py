"""Autoregressive decoding: one engine (prefill + cached decode steps over a static cache) and the strategies
over it: greedy and sampled decoding, beam search, speculative decoding (prompt lookup, a draft model); greedy
decoding of parallel token streams (streams.py)."""
from .decode import generate, left_pad
from .engine import Engine
from .sampling import sample
from .streams import greedy_streams
from .text import generate_text

__all__ = ["Engine", "generate", "generate_text", "greedy_streams", "left_pad", "sample"]
