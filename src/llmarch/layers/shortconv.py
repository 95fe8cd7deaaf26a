"""A gated short convolution (LFM2's `conv` layers; Liquid AI 2025, "LFM2 Technical Report"): B, C, h = x W_in
(three d-wide parts), y = (C * conv(B * h)) W_out, with conv a depthwise causal convolution of ssm_conv taps and
no activation: two multiplicative gates around a short filter, as H3's and Hyena's short convolutions (Fu et al.
2023; Poli et al. 2023, §3.1) but with no long filter behind it. Its decode state is the last ssm_conv - 1 inputs
of the convolution, constant in the context."""
from __future__ import annotations

import torch

from .linear import Linear
from .mixer import MIXERS, Mixer
from .ssm import MixerState, causal_conv, check_recurrent, conv_state, depthwise_conv, masked, token_mask


@MIXERS.register("shortconv")
class ShortConv(Mixer):
    @classmethod
    def check(cls, cfg) -> None:
        check_recurrent(cfg, "shortconv", ("ssm_conv",))

    def __init__(self, cfg, layer: int = 0):
        super().__init__()
        d = self.width = cfg.d_model
        self.in_proj = Linear(d, 3 * d, bias=cfg.ssm_bias)  # rows: B, then C, then h
        self.conv1d = depthwise_conv(d, cfg.ssm_conv, cfg.ssm_conv_bias)
        self.out_proj = Linear(d, d, bias=cfg.ssm_bias)

    def new_state(self, batch: int, max_len: int, dtype: torch.dtype, device) -> MixerState:
        return MixerState(conv=conv_state(batch, self.width, self.conv1d.kernel_size[0], dtype, device))

    def forward(self, x: torch.Tensor, ctx=None) -> torch.Tensor:
        mask = token_mask(ctx, x)  # padding zeroed: it enters neither the convolution nor its state
        b, c, h = self.in_proj(masked(x, mask)).chunk(3, dim=-1)
        state = self.cache
        y = c * causal_conv(b * h, self.conv1d.weight, self.conv1d.bias, None if state is None else state["conv"])
        return self.out_proj(y)
