"""A convolution beside the first block (`side_conv`): DeBERTa-v2's nGiE, "n-gram induced input encoding" (He et
al. 2021, the DeBERTa v2 models' notes: "an additional convolution layer aside with the first transformer layer to
better learn the local dependency of input tokens"). With x block 0's input (the embeddings) and y its output:
    y' = norm(y + act(conv(x))) * m,
conv a 1-d convolution over positions of odd kernel (its output the input's length), m the padding mask (1 at real
tokens): padding enters the convolution as zeros and leaves it as zeros, as transformers' ConvLayer computes it.
The convolution sees later tokens, so it is for bidirectional stacks only.
Shapes: B batch, T length, C d_model."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import LlmarchError
from .norms import make_norm

_ACTS = {"tanh": torch.tanh, "gelu": nn.functional.gelu, "relu": torch.relu}


def check_side_conv(cfg) -> None:
    if not cfg.side_conv:
        return
    if cfg.side_conv < 0 or cfg.side_conv % 2 == 0:
        raise LlmarchError(f"side_conv must be an odd kernel size (0: none), got {cfg.side_conv}")
    if cfg.causal or cfg.n_decoder_layers:
        raise LlmarchError("side_conv reads later tokens: it needs a bidirectional encoder-only stack (causal=False)")
    if cfg.side_conv_act not in _ACTS:
        raise LlmarchError(f"unknown side_conv_act {cfg.side_conv_act!r}; choose one of: {', '.join(_ACTS)}")
    if cfg.side_conv_groups <= 0 or cfg.d_model % cfg.side_conv_groups:
        raise LlmarchError(f"side_conv_groups={cfg.side_conv_groups} must divide d_model={cfg.d_model}")


class SideConv(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        k = cfg.side_conv
        self.conv = nn.Conv1d(cfg.d_model, cfg.d_model, k, padding=(k - 1) // 2, groups=cfg.side_conv_groups)
        self.norm = make_norm(cfg)
        self.act = _ACTS[cfg.side_conv_act]

    def forward(self, x: torch.Tensor, y: torch.Tensor, pad_mask: torch.Tensor | None) -> torch.Tensor:
        """x: block 0's input, y: its output, (B, T, C) each; pad_mask (B, T) bool or None: all real."""
        real = None if pad_mask is None else pad_mask[:, : x.shape[1], None].to(x.dtype)  # (B, T, 1)
        if real is not None:
            x = x * real
        out = self.conv(x.transpose(1, 2)).transpose(1, 2)  # (B, T, C)
        if real is not None:
            out = out * real
        out = self.norm(y + self.act(out))
        return out if real is None else out * real
