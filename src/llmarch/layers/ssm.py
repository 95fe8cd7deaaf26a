"""What the state-space and convolution mixers (mamba.py, mamba2.py, hyena.py) share: the depthwise causal
convolution with its rolling state, the padding mask applied to a mixer's inputs, the per-sequence state they
carry between calls during generation (mixer.py has the protocol), and the config check they share."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LlmarchError


class MixerState:
    """One layer's recurrent state for a batch of sequences: named tensors whose first dim is the batch (a
    convolution's last inputs, an SSM's state, ...), updated in place so a compiled step can capture them.
    `slot_axes`: the tensors indexed by cache slot (a history), and on which axis; the others summarise it."""

    slot_axes: dict[str, int] = {}

    def __init__(self, **tensors: torch.Tensor):
        self.tensors = tensors

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tensors[name]

    def reorder(self, rows: torch.Tensor) -> None:
        """Row r now holds what row rows[r] held (beam search)."""
        self.tensors = {k: v.index_select(0, rows) for k, v in self.tensors.items()}

    def put_row(self, row: int, src: "MixerState", start: int, length: int) -> None:
        """Row `row` takes src's row 0 (continuous batching, generate/batch.py), as if its sequence had been
        left-padded with `start` slots: a history's first `length` slots move to start.., zeros before them."""
        for name, t in self.tensors.items():
            if name in self.slot_axes:
                axis = self.slot_axes[name] - 1  # within one row
                t[row].zero_()
                t[row].narrow(axis, start, length).copy_(src[name][0].narrow(axis, 0, length))
            else:
                t[row].copy_(src[name][0])

    def rows(self, n: int) -> "MixerState":
        """The first n rows, sharing this state's memory (what the state shares across rows stays shared)."""
        view = copy.copy(self)
        view.tensors = {k: v[:n] for k, v in self.tensors.items()}
        return view

    def shift(self, n: int) -> None:
        """Every row's slot s + n moves to slot s (n < 0: to the right), zeros where nothing moves in; a
        state without a history does not move."""
        for name, axis in self.slot_axes.items():
            t = self.tensors[name]
            t.copy_(t.roll(-n, dims=axis))
            (t.narrow(axis, t.shape[axis] - n, n) if n > 0 else t.narrow(axis, 0, -n)).zero_()

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())


def check_recurrent(cfg, name: str, fields: tuple[str, ...]) -> None:
    """A recurrent mixer's shared config rules: positive sizes, and decoder-only models (it is causal)."""
    for field in fields:
        if getattr(cfg, field) <= 0:
            raise LlmarchError(f"{field} must be a positive integer, got {getattr(cfg, field)}")
    if not cfg.causal or cfg.n_decoder_layers:
        raise LlmarchError(f"mixer={name!r} is causal: it builds decoder-only models (causal=True, "
                           "n_decoder_layers=0)")


def token_mask(ctx, x: torch.Tensor) -> torch.Tensor | None:
    """(B, T, 1) 1.0 for real tokens of this call, 0.0 for (left) padding; None without padding. Zeroing a
    padded token's mixer inputs keeps it out of the convolution and out of the state (its update is zero)."""
    if ctx is None or ctx.pad_mask is None:
        return None
    return ctx.pad_mask.index_select(1, ctx.input_pos)[..., None].to(x.dtype)


def masked(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return x if mask is None else x * mask


def causal_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                state: torch.Tensor | None = None) -> torch.Tensor:
    """Depthwise causal convolution: out_t = sum_j w_j x_{t-K+1+j} + b per channel. x (B, T, C), weight
    (C, 1, K). state (B, C, K-1): the inputs before x (zeros at the start of a sequence), read and then
    overwritten with the last K-1 inputs, so the next call continues the sequence."""
    K = weight.shape[-1]
    xt = x.transpose(1, 2)  # (B, C, T)
    if K == 1:
        padded = xt
    elif state is None:
        padded = F.pad(xt, (K - 1, 0))
    else:
        padded = torch.cat([state.to(xt.dtype), xt], dim=-1)
        state.copy_(padded[..., -(K - 1):])
    return F.conv1d(padded, weight, bias, groups=xt.shape[1]).transpose(1, 2)


def conv_state(batch: int, channels: int, kernel: int, dtype, device) -> torch.Tensor:
    return torch.zeros(batch, channels, max(kernel - 1, 0), dtype=dtype, device=device)


def depthwise_conv(channels: int, kernel: int, bias: bool) -> nn.Conv1d:
    """The convolution's parameters as transformers' Mamba stores them (conv1d.weight (C, 1, K), .bias);
    the module's own forward is not used (causal_conv above)."""
    return nn.Conv1d(channels, channels, kernel, groups=channels, padding=kernel - 1, bias=bias)


def inverse_softplus(x: torch.Tensor) -> torch.Tensor:
    return x + torch.log(-torch.expm1(-x))


def init_dt_bias(bias: torch.Tensor, dt_min: float = 1e-3, dt_max: float = 0.1, floor: float = 1e-4) -> None:
    """Step sizes dt = softplus(bias) log-uniform in [dt_min, dt_max] at initialisation (Gu & Dao 2023, §3.6)."""
    log_dt = torch.rand(bias.shape, device=bias.device) * (torch.log(torch.tensor(dt_max / dt_min))) \
        + torch.log(torch.tensor(dt_min))
    bias.copy_(inverse_softplus(log_dt.exp().clamp(min=floor)))
