"""Funnel-Transformer's schedule (Dai et al. 2020, "Funnel-Transformer: Filtering out Sequential Redundancy for
Efficient Language Processing", §2.2-2.3), recurrence 'funnel': the encoder's blocks run in groups (funnel_blocks),
and before each group after the first the sequence is pooled to about half its length, so later groups compute over
fewer tokens. The first block of a pooled group attends from the pooled queries over the unpooled keys and values
(pool-query-only, §2.2: h = LN(pool(h) + Attn(pool(h), h, h)); funnel_pool_q_only false pools all three), its
residual the pooled stream. With funnel_decoder_layers the compressed sequence is upsampled back to full length by
repeating each token 2^(groups - 1) times, added to the first group's output, and run through those last blocks at
full length (§2.3): the masked LM's and the token classifier's decoder. Without them the stack's output is the pooled
sequence (the base model and the sequence classifier).

Pooling (funnel_pooling: mean or max over pairs of neighbours, stride 2): with funnel_separate_cls the first token
(<cls>) is kept apart, the sequence read as [<cls>, t_0 .. t_{T-2}] (funnel_truncate: the last token dropped so that
the rest pairs up; else [<cls>, t_0 .. t_{T-1}]) before the pairs are formed, so <cls> survives every pooling alone.
A pooled token keeps its pair's first member's position and token type (stride pooling) and is masked where either
member is (min pooling); a last unpaired member is its own pair. A sequence too short to pool (2 tokens with <cls>, 1
without) is not pooled. Shapes: B batch, T length, C d_model."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..errors import LlmarchError
from .funnel_attention import PoolingView
from .recurrence import RECURRENCES

POOLINGS = ("mean", "max")


class Funnel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.groups, self.decoder = list(cfg.funnel_blocks), cfg.funnel_decoder_layers
        self.mode, self.separate_cls = cfg.funnel_pooling, cfg.funnel_separate_cls
        self.truncate, self.q_only = cfg.funnel_truncate, cfg.funnel_pool_q_only
        self._order = list(range(cfg.n_layers))

    @classmethod
    def check(cls, cfg) -> None:
        groups = cfg.funnel_blocks or []
        if not groups or any(not isinstance(g, int) or isinstance(g, bool) or g <= 0 for g in groups) \
                or cfg.funnel_decoder_layers < 0 or sum(groups) + cfg.funnel_decoder_layers != cfg.n_layers \
                or cfg.funnel_pooling not in POOLINGS:
            raise LlmarchError(f"recurrence='funnel' needs funnel_blocks, positive block counts that with "
                               f"funnel_decoder_layers sum to n_layers={cfg.n_layers}, and funnel_pooling one of "
                               f"{', '.join(POOLINGS)}; got {cfg.funnel_blocks}, {cfg.funnel_decoder_layers} and "
                               f"{cfg.funnel_pooling!r}")
        if cfg.causal or cfg.n_decoder_layers or cfg.layer_types is not None or cfg.layer_groups \
                or cfg.mixer != "funnel_attention" or cfg.attn_period or cfg.norm_placement != "post" \
                or cfg.block != "sequential" or cfg.hyper_connection != "none" or cfg.altup_streams > 1:
            raise LlmarchError("recurrence='funnel' runs post-norm blocks of mixer 'funnel_attention' in a "
                               "bidirectional encoder-only stack, without layer types, shared layers or streams")

    def order(self) -> list[int]:
        """The block of each invocation, in the order they run: each once."""
        return self._order

    def token_shares(self) -> list[tuple[float, float]]:
        """Each invocation's (query, key) share of the input's tokens, for FLOP counts (analysis/accounting.py):
        group g runs over 1/2^g of them (as T grows: <cls> kept apart is one more), a pooled group's first block's
        keys over the group before's where only queries pool; the decoder over all."""
        shares = []
        for g, size in enumerate(self.groups):
            share = 0.5 ** g
            shares += [(share, 2 * share if self.q_only and g and not layer else share) for layer in range(size)]
        return shares + [(1.0, 1.0)] * self.decoder

    def _arrange(self, t: torch.Tensor) -> torch.Tensor:
        """(B, T, ...) as its pairs are read: <cls> kept apart (and the last token dropped) where configured."""
        if not self.separate_cls:
            return t
        return torch.cat([t[:, :1], t[:, :-1] if self.truncate else t], dim=1)

    def _stride(self, t: torch.Tensor) -> torch.Tensor:
        """The first member of each pair, (B, T', ...)."""
        return self._arrange(t)[:, ::2]

    def _pool(self, t: torch.Tensor, mode: str) -> torch.Tensor:
        """Each pair reduced by mode (mean, max, min), (B, T', ...)."""
        t = self._arrange(t)
        if t.shape[1] % 2:  # a last member alone: paired with itself
            t = torch.cat([t, t[:, -1:]], dim=1)
        pairs = t.unflatten(1, (-1, 2))
        return pairs.mean(2) if mode == "mean" else pairs.amax(2) if mode == "max" else pairs.amin(2)

    def _pooled(self, view: PoolingView) -> PoolingView:
        """The view of the pooled sequence, queries and keys alike."""
        pos, types = self._stride(view.q_pos[None])[0], self._stride(view.q_types)
        mask = None if view.key_mask is None else self._pool(view.key_mask, "min")
        return PoolingView(pos, pos, types, types, mask, None, self.separate_cls)

    def _upsample(self, x: torch.Tensor, length: int) -> torch.Tensor:
        """(B, T', C) back to (B, length, C): each token repeated 2^(groups - 1) times, <cls> kept apart."""
        stride = 2 ** (len(self.groups) - 1)
        if stride == 1:
            return x
        if not self.separate_cls:
            return x.repeat_interleave(stride, dim=1)[:, :length]
        rest = x[:, 1:].repeat_interleave(stride, dim=1)
        if self.truncate:  # the token dropped before pooling comes back as zeros
            rest = nn.functional.pad(rest, (0, 0, 0, stride - 1))
        return torch.cat([x[:, :1], rest[:, :length - 1]], dim=1)

    def forward(self, x: torch.Tensor, run, ctx) -> torch.Tensor:
        """x (B, T, C): the embeddings; run(k, h, ctx): invocation k on h with its context."""
        B, T, _ = x.shape
        pos = torch.arange(T, device=x.device)
        types = ctx.token_type_ids if ctx.token_type_ids is not None else torch.zeros_like(pos).expand(B, T)
        full = view = PoolingView(pos, pos, types, types, ctx.pad_mask, None, self.separate_cls)
        h, k, first = x, 0, x
        for g, size in enumerate(self.groups):
            pool = g > 0 and h.shape[1] > (2 if self.separate_cls else 1)
            for layer in range(size):
                if pool and layer == 0:
                    pooled = self._pooled(view)
                    q = self._pool(h, self.mode)
                    this = dataclasses.replace(pooled, k_pos=view.k_pos, k_types=view.k_types,
                                               key_mask=view.key_mask, kv=h) if self.q_only else pooled
                    h, view = run(k, q, dataclasses.replace(ctx, pooling=this)), pooled
                else:
                    h = run(k, h, dataclasses.replace(ctx, pooling=view))
                k += 1
            if g == 0:
                first = h
        if self.decoder:
            h = self._upsample(h, T) + first
            for _ in range(self.decoder):
                h, k = run(k, h, dataclasses.replace(ctx, pooling=full)), k + 1
        return h


RECURRENCES.register("funnel")(Funnel)
