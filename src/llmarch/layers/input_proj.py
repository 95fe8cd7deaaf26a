"""Token embeddings projected into the residual stream before positions and token types join them (embed_input):
MobileBERT's narrow embedding table (Sun et al. 2020, "MobileBERT: a Compact Task-Agnostic BERT for
Resource-Limited Devices", §4.1: embeddings of 128 widened to the 512 of the blocks). 'project': x = e_t W + b;
'trigram' (trigram_input): each token's embedding beside its next and previous tokens' (zeros past either end of the
row, as a kernel-3 convolution pads), x = [e_t+1; e_t; e_t-1] W + b. The trigram reads the next token, so it is for
bidirectional encoders only. Shapes: B batch, T length, E embed_dim, C d_model."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import LlmarchError
from .linear import Linear

EMBED_INPUTS = ("token", "project", "trigram")


def check_input_proj(cfg) -> None:
    if cfg.embed_input not in EMBED_INPUTS:
        raise LlmarchError(f"unknown embed_input {cfg.embed_input!r}; choose one of: {', '.join(EMBED_INPUTS)}")
    if cfg.embed_input == "token":
        return
    if cfg.embed_proj or cfg.n_decoder_layers or cfg.ple_dim or cfg.embed_scale:
        raise LlmarchError(f"embed_input={cfg.embed_input!r} projects the token embeddings before the positions: not "
                           "with embed_proj, per-layer inputs, embed_scale or an encoder-decoder")
    if cfg.embed_input == "trigram" and cfg.causal:
        raise LlmarchError("embed_input='trigram' reads each token's next one: it needs a bidirectional encoder "
                           "(causal=False)")


class InputProjection(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.trigram = cfg.embed_input == "trigram"
        self.proj = Linear((3 if self.trigram else 1) * cfg.embed_width, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, E) -> (B, T, C)
        if self.trigram:  # [e_t+1; e_t; e_t-1], (B, T, 3E)
            x = torch.cat([F.pad(x[:, 1:], (0, 0, 0, 1)), x, F.pad(x[:, :-1], (0, 0, 1, 0))], dim=-1)
        return self.proj(x)
