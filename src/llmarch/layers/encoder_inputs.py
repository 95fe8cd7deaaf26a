"""What an encoder-decoder's encoder reads in place of source token ids (config encoder_input): a front end maps float
features to the stream that enters the encoder's first block, its own positions added (the encoder stack then adds
none: positions 'none' with the decoder's in decoder_overrides). 'tokens', the default, is no part of this registry:
the source ids through the token embedding (models/encoder_decoder.py).

'conv_stem' (Whisper; Radford et al. 2022, "Robust Speech Recognition via Large-Scale Weak Supervision", §2.2): a
log-mel spectrogram of M channels (80 or 128) and 2S frames, through "a small stem consisting of two convolution
layers with a filter width of 3 and the GELU activation function where the second convolution layer has a stride of
two", after which "sinusoidal position embeddings are added":
    x = GELU(conv2(GELU(conv1(f)))) + PE,    conv1: M -> C, conv2: C -> C stride 2,    f (B, M, 2S) -> x (B, S, C)
PE is the timing signal of positions.fairseq_sinusoids, fixed (a buffer, never trained) yet stored, as Whisper's
checkpoints hold it. The encoder reads exactly 2 * context_length frames (30 s at 100 frames a second: 3000 frames,
1500 positions), as Whisper's does; frames are never masked (silence is padding in the features). The features
themselves: data/log_mel.py."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import LlmarchError
from ..registry import Registry
from .positions import fairseq_sinusoids

ENCODER_INPUTS: Registry = Registry("encoder input")


def check_encoder_input(cfg) -> None:
    if cfg.encoder_input == "tokens":
        if cfg.input_channels:
            raise LlmarchError(f"input_channels={cfg.input_channels} sizes an encoder front end's features: it needs "
                               "an encoder_input other than 'tokens'")
        return
    if cfg.encoder_input not in ENCODER_INPUTS:
        raise LlmarchError(f"unknown encoder_input {cfg.encoder_input!r}; choose one of: tokens, "
                           + ", ".join(ENCODER_INPUTS.names()))
    if not cfg.n_decoder_layers or cfg.encoder_embed or cfg.input_channels < 1 or cfg.positions != "none":
        raise LlmarchError(f"encoder_input={cfg.encoder_input!r} is an encoder-decoder's (n_decoder_layers > 0) "
                           "front end over input_channels >= 1 features, adding its own positions (positions 'none'; "
                           "the decoder's in decoder_overrides), without encoder_embed")


@ENCODER_INPUTS.register("conv_stem")
class ConvStem(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg.d_model
        self.conv1 = nn.Conv1d(cfg.input_channels, d, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d, d, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positions", fairseq_sinusoids(cfg.context_length, d))  # (S, C), stored, not trained
        self.frames = 2 * cfg.context_length

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # (B, M, 2S) -> (B, S, C)
        M = self.conv1.in_channels
        if features.dim() != 3 or features.shape[1] != M or features.shape[2] != self.frames:
            raise LlmarchError(f"input_features must have shape (batch, {M}, {self.frames}): {M} feature channels "
                               f"and exactly {self.frames} frames (pad the log-mel features to it), got "
                               f"{tuple(features.shape)}")
        x = F.gelu(self.conv1(features.to(self.conv1.weight.dtype)))
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # (B, S, C)
        return x + self.positions.to(x.dtype)
