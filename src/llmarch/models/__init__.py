"""Thin assemblies of layers/: the transformer LM (causal or bidirectional); encoder-decoder joins here."""
from .transformer import TransformerLM, ModelOutput

__all__ = ["TransformerLM", "ModelOutput"]
