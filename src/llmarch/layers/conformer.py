"""The Conformer block (Gulati et al. 2020, "Conformer: Convolution-augmented Transformer for Speech Recognition",
§2, eq. 1) as Gemma 3n's and Gemma 4's USM audio encoders build it (transformers' Gemma4AudioLayer):
    x = x + 1/2 FFN(x)                       half-step ("macaron") feed-forward, its output RMS-normed then halved
    x = x + Norm(MHSA(Norm(x)))              local self-attention with relative positions (local_relative_attention)
    x = x + Conv(x)                          the light convolution module (§2.2): GLU, causal depthwise conv, act
    x = x + 1/2 FFN(x)
    y = Norm(x)
with RMSNorms (x / rms(x) * g), activations clamped to +-clip before each norm (Gemma's gradient_clipping) and every
linear map a ClippedLinear. The conv module is causal: frame t reads frames t - kernel + 1 .. t. Shapes: (N, T, C)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .clipped_linear import ClippedLinear, clamp_abs
from .ffn import ACTIVATIONS
from .local_relative_attention import LocalRelativeAttention
from .norms import RMSNorm

# transformers' Gemma4AudioLayer builds its block and feed-forward norms at RMSNorm's default eps, whatever the
# config's rms_norm_eps (which the convolution module's norms and the stem read)
BLOCK_EPS = 1e-6


class HalfStepFFN(nn.Module):
    """x + w Norm(W2 act(W1 Norm(x))), W1 ffn_hidden wide (Gemma 4: 4C), w the residual weight (1/2: Conformer's
    half step)."""

    def __init__(self, a):
        super().__init__()
        self.clip, self.weight = a.clip, a.residual_weight
        self.norm = RMSNorm(a.width, BLOCK_EPS)
        self.up = ClippedLinear(a.width, a.ffn_hidden, a.clipped)
        self.act = ACTIVATIONS[a.act]
        self.down = ClippedLinear(a.ffn_hidden, a.width, a.clipped)
        self.post_norm = RMSNorm(a.width, BLOCK_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.down(self.act(self.up(self.norm(clamp_abs(x, self.clip)))))
        return x + self.post_norm(clamp_abs(h, self.clip)) * self.weight


class LightConv(nn.Module):
    """Conformer's convolution module (§2.2, Fig. 2) without batch norm: x + W2 act(Norm(DWConv(GLU(W1 Norm(x))))),
    W1 2C wide (the GLU's value and gate halves), the depthwise convolution causal and without bias."""

    def __init__(self, a):
        super().__init__()
        self.clip, self.kernel = a.clip, a.conv_kernel
        self.norm = RMSNorm(a.width, a.norm_eps)
        self.up = ClippedLinear(a.width, 2 * a.width, a.clipped)
        self.depthwise = nn.Conv1d(a.width, a.width, a.conv_kernel, groups=a.width, bias=False)
        self.conv_norm = RMSNorm(a.width, a.norm_eps)
        self.act = ACTIVATIONS[a.act]
        self.down = ClippedLinear(a.width, a.width, a.clipped)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.glu(self.up(self.norm(x)), dim=-1).transpose(1, 2)  # (N, C, T)
        h = self.depthwise(F.pad(h, (self.kernel - 1, 0))).transpose(1, 2)  # causal: left padding only
        return x + self.down(self.act(self.conv_norm(clamp_abs(h, self.clip))))


class ConformerBlock(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.clip = a.clip
        self.ffn1 = HalfStepFFN(a)
        self.attn_norm = RMSNorm(a.width, BLOCK_EPS)
        self.attn = LocalRelativeAttention(a.width, a.n_heads, a.chunk, a.context_left, a.context_right, a.logit_cap,
                                           a.masked_logit, a.clipped)
        self.attn_post_norm = RMSNorm(a.width, BLOCK_EPS)
        self.conv = LightConv(a)
        self.ffn2 = HalfStepFFN(a)
        self.out_norm = RMSNorm(a.width, BLOCK_EPS)

    def forward(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """x (N, T, C), keys (N, T): the real frames -> (N, T, C)."""
        x = self.ffn1(x)
        h = self.attn(self.attn_norm(clamp_abs(x, self.clip)), keys)
        x = x + self.attn_post_norm(clamp_abs(h, self.clip))
        x = self.ffn2(self.conv(x))
        return self.out_norm(clamp_abs(x, self.clip))
