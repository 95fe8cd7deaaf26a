"""Fourier token mixing (FNet; Lee-Thorp et al. 2021, "FNet: Mixing Tokens with Fourier Transforms", §3.2, eq. 3):
the mixer y = Re(F_seq(F_hidden(x))), a 2-D discrete Fourier transform over the sequence and the hidden dims with
only the real part kept. It has no parameters; in a post-norm block it replaces self-attention, x = n(x + y).
Every output position reads every input position, padding included: the transform runs over the sequence as
given (FNet feeds fixed-length padded inputs, and transformers' FNet takes no attention mask), so a right-padded
row's outputs depend on how much padding follows it; a mask that hides some tokens is refused. Bidirectional only:
there is no causal form and no decode state (an encoder's mixer)."""
from __future__ import annotations

import torch

from ..errors import LlmarchError
from .mixer import MIXERS, Mixer


@MIXERS.register("fourier")
class Fourier(Mixer):
    residual_out = ()
    bidirectional_only = True

    @classmethod
    def check(cls, cfg) -> None:
        if cfg.causal or cfg.n_decoder_layers:
            raise LlmarchError("mixer='fourier' (FNet) mixes every position with every other: it needs an "
                               "encoder-only stack (causal=False)")

    def __init__(self, cfg, layer: int = 0):
        super().__init__()

    def new_state(self, batch: int, max_len: int, dtype: torch.dtype, device):
        raise LlmarchError("mixer='fourier' (FNet) runs over whole sequences (an encoder's): it has no decode state")

    def cache_bytes(self, dtype: torch.dtype, max_len: int) -> tuple[int, int]:
        return 0, 0

    def state_note(self, dtype: str) -> str:
        return ""

    def forward(self, x: torch.Tensor, ctx=None) -> torch.Tensor:  # x (B, T, C)
        if ctx is not None and ctx.pad_mask is not None and not bool(ctx.pad_mask.all()):
            # masked slots would still be transformed, but at the positions a mask gives padding (the last real
            # one's), not FNet's 0..T-1: refused rather than computed unlike the model
            raise LlmarchError("mixer='fourier' (FNet) takes no attention mask: it transforms padding with the rest "
                               "(pass the padded ids without attention_mask)")
        # fft2 over (T, C) in complex64 (complex128 for float64), as torch.fft.fftn(dim=(1, 2)) in transformers
        return torch.fft.fftn(x.float() if x.dtype in (torch.float16, torch.bfloat16) else x, dim=(1, 2)).real.to(
            x.dtype)
