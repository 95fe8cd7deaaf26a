"""Thin assemblies of layers/. Decoder-only now; encoder and encoder-decoder stacks join here."""
from .decoder import DecoderLM, ModelOutput

__all__ = ["DecoderLM", "ModelOutput"]
