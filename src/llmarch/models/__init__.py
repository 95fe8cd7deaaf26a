"""Thin assemblies of layers/: the transformer LM (causal or bidirectional, one stack) and the
encoder-decoder (two stacks joined by cross-attention); build.py builds either from a config."""
from .encoder_decoder import EncoderDecoderLM
from .transformer import ModelOutput, TransformerLM

__all__ = ["EncoderDecoderLM", "ModelOutput", "TransformerLM"]
