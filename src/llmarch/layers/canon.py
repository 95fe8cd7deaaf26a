"""Canon layers (Allen-Zhu 2025, "Physics of Language Models: Part 4.1, Architecture Design and the Magic of Canon
Layers", §3): a depthwise causal convolution of K taps with a residual, h_t + sum_j w_j h_{t-K+1+j} per channel,
which hands each position a little of its neighbours' state. Inkling puts one on attention's projected keys and values
(canon_kv) and one on each sublayer's output before its residual add (canon_out); computed in fp32 as Inkling does,
padding zeroed before the convolution (it enters no later position's sum), the residual its own input. Inkling 2
divides each sum by sqrt(K + 1) (canon_scaled), and its full layers' key and value convolutions are dynamic
(DynamicCanon): each token's taps are the static ones plus K of its own per key/value head, projected from the
attention's input, (h_t + sum_j (w_j + u_tj) h_{t-K+1+j}) / sqrt(2K + 1).

Decode state: the convolution's inputs by cache slot (B, S, C), so a step at slot p reads slots p-K+1..p and decoding
may rewind or move rows as it does a KV cache (by_slot). A block's state is its mixer's plus these
(BlockState, which models/stack.py hands around as one)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LlmarchError
from .linear import Linear
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
    def __init__(self, channels: int, kernel: int, scaled: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels, 1, kernel))  # (C, 1, K): nn.Conv1d's depthwise layout
        self.cache: CanonHistory | None = None
        self.divisor = math.sqrt(kernel + 1) if scaled else 1.0

    def new_state(self, batch: int, max_len: int, dtype: torch.dtype, device) -> CanonHistory:
        return CanonHistory(x=torch.zeros(batch, max_len, self.weight.shape[0], dtype=torch.float32, device=device))

    def _masked(self, h: torch.Tensor, ctx) -> torch.Tensor:
        """h in fp32 with padding zeroed."""
        x = h.float()
        return x if ctx.pad_mask is None else x * ctx.pad_mask.index_select(1, ctx.input_pos)[..., None]

    def _taps(self, x: torch.Tensor, ctx) -> torch.Tensor:
        """(B, T, K, C): each token's last K inputs, oldest first, zeros before slot 0; with a cache, this call's
        inputs written to it first."""
        K = self.weight.shape[-1]
        if self.cache is None:
            return F.pad(x, (0, 0, K - 1, 0)).unfold(1, K, 1).transpose(2, 3)
        hist = self.cache["x"]
        hist.index_copy_(1, ctx.input_pos, x)
        slots = ctx.input_pos[:, None] - (K - 1) + torch.arange(K, device=x.device)  # (T, K)
        return hist[:, slots.clamp(min=0)] * (slots >= 0)[None, :, :, None]

    def forward(self, h: torch.Tensor, ctx, src: torch.Tensor | None = None) -> torch.Tensor:  # (B, T, C)
        """src: the input of a dynamic Canon's taps (DynamicCanon); a static one reads none."""
        x = self._masked(h, ctx)
        w = self.weight.float()
        K = w.shape[-1]
        if self.cache is None:
            y = F.conv1d(F.pad(x.transpose(1, 2), (K - 1, 0)), w, groups=w.shape[0]).transpose(1, 2)
        else:
            y = torch.einsum("btkc,ck->btc", self._taps(x, ctx), w[:, 0])
        return ((h.float() + y) / self.divisor).to(h.dtype)


class DynamicCanon(Canon):
    """A Canon layer whose taps are its static weights plus per-token ones, proj(src) (B, T, heads * K), shared by
    the channels of each key/value head (Inkling 2's DynamicShortConvolution): the sum over 2K weights and the
    residual, divided by sqrt(2K + 1) when scaled."""

    def __init__(self, channels: int, kernel: int, scaled: bool = False, *, d_model: int, heads: int):
        super().__init__(channels, kernel, scaled)
        self.heads = heads
        self.proj = Linear(d_model, heads * kernel, bias=False)
        self.divisor = math.sqrt(2 * kernel + 1) if scaled else 1.0

    def forward(self, h: torch.Tensor, ctx, src: torch.Tensor | None = None) -> torch.Tensor:  # (B, T, C)
        B, T, C = h.shape
        K = self.weight.shape[-1]
        taps = self._taps(self._masked(h, ctx), ctx).view(B, T, K, self.heads, C // self.heads)
        # the projection's taps count back from the current token (lag 0 first): oldest first, as taps are
        own = self.proj(src).float().view(B, T, self.heads, K).flip(-1).transpose(2, 3)[..., None]  # (B,T,K,heads,1)
        w = self.weight.float()[:, 0].t().view(K, self.heads, -1)  # (K, heads, C / heads)
        y = (taps * (w + own)).sum(2).reshape(B, T, C)
        return ((h.float() + y) / self.divisor).to(h.dtype)


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
