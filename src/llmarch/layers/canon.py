"""Canon layers (Allen-Zhu 2025, "Physics of Language Models: Part 4.1, Architecture Design and the Magic of Canon
Layers", §3): a depthwise causal convolution of K taps with a residual, h_t + sum_j w_j h_{t-K+1+j} per channel,
which hands each position a little of its neighbours' state. Inkling puts one on attention's projected keys and values
(canon_kv) and one on each sublayer's output before its residual add (canon_out); computed in fp32 as Inkling does,
padding zeroed before the convolution (it enters no later position's sum), the residual its own input.

Decode state: the convolution's inputs by cache slot (B, S, C), so a step at slot p reads slots p-K+1..p and decoding
may rewind or move rows as it does a KV cache (by_slot). A block's state is its mixer's plus these
(BlockState, which models/stack.py hands around as one)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LlmarchError
from .ssm import MixerState


def check_canon(cfg) -> None:
    if cfg.canon_kv < 0 or cfg.canon_out < 0:
        raise LlmarchError(f"canon_kv and canon_out are convolution taps, >= 0 (0: none), got {cfg.canon_kv} and "
                           f"{cfg.canon_out}")
    if (cfg.canon_kv or cfg.canon_out) and (not cfg.causal or cfg.n_decoder_layers or cfg.block != "sequential"
                                            or cfg.norm_placement != "pre" or cfg.hyper_connection != "none"
                                            or cfg.moe_shortcut or cfg.laurel_rank or cfg.altup_streams > 1):
        raise LlmarchError("canon_kv and canon_out (causal convolutions) need a decoder-only stack of sequential "
                           "pre-norm blocks without hyper-connections, moe_shortcut, LAuReL or AltUp")


class CanonHistory(MixerState):
    """A Canon layer's inputs by slot: tensor `x` (B, S, C)."""

    slot_axes = {"x": 1}
    by_slot = True


class Canon(nn.Module):
    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels, 1, kernel))  # (C, 1, K): nn.Conv1d's depthwise layout
        self.cache: CanonHistory | None = None

    def new_state(self, batch: int, max_len: int, dtype: torch.dtype, device) -> CanonHistory:
        return CanonHistory(x=torch.zeros(batch, max_len, self.weight.shape[0], dtype=torch.float32, device=device))

    def forward(self, h: torch.Tensor, ctx) -> torch.Tensor:  # (B, T, C)
        x = h.float()
        if ctx.pad_mask is not None:
            x = x * ctx.pad_mask.index_select(1, ctx.input_pos)[..., None]
        w = self.weight.float()
        K = w.shape[-1]
        if self.cache is None:
            y = F.conv1d(F.pad(x.transpose(1, 2), (K - 1, 0)), w, groups=w.shape[0]).transpose(1, 2)
        else:
            hist = self.cache["x"]
            hist.index_copy_(1, ctx.input_pos, x)
            slots = ctx.input_pos[:, None] - (K - 1) + torch.arange(K, device=x.device)  # (T, K)
            taps = hist[:, slots.clamp(min=0)] * (slots >= 0)[None, :, :, None]  # (B, T, K, C)
            y = torch.einsum("btkc,ck->btc", taps, w[:, 0])
        return (h.float() + y).to(h.dtype)


class BlockState:
    """A block's decode state where it holds Canon layers: its mixer's state and their histories, moved together
    (beam search, continuous batching, rewinds)."""

    def __init__(self, mixer, canons: list):
        self.mixer, self.canons = mixer, canons

    @property
    def by_slot(self) -> bool:
        return getattr(self.mixer, "by_slot", False)

    @property
    def nbytes(self) -> int:
        return self.mixer.nbytes + sum(c.nbytes for c in self.canons)

    def reorder(self, rows: torch.Tensor) -> None:
        for s in (self.mixer, *self.canons):
            s.reorder(rows)

    def put_row(self, row: int, src: "BlockState", start: int, length: int) -> None:
        for s, t in zip((self.mixer, *self.canons), (src.mixer, *src.canons)):
            s.put_row(row, t, start, length)

    def rows(self, n: int) -> "BlockState":
        return BlockState(self.mixer.rows(n), [c.rows(n) for c in self.canons])

    def shift(self, n: int) -> None:
        for s in (self.mixer, *self.canons):
            s.shift(n)
