"""Mask-based sparse attention: each query attends only to the keys its pattern allows, computed blockwise so
no L x L matrix (scores or mask) is ever formed.

A pattern names, for every block of `block` queries, the key positions that may hold allowed keys (a fixed
number per block, -1 where unused), and an exact elementwise predicate allowed(query pos, key pos). The
engine gathers each query block's keys and values, masks by the predicate (plus causality and padding),
and runs a softmax over those keys only: memory O(L * keys per block), linear in L for a fixed pattern.
Patterns:
- sliding_window (Longformer's local attention, Beltagy et al. 2020; Mistral): |i - j| < w (with causality
  j in (i - w, i]);
- strided, the "fixed" pattern of the Sparse Transformer (Child et al. 2019, §4.2): j in i's own block of l
  positions, or j among the last c positions of any block ("summary" columns); with l ~ sqrt(L) each query
  sees O(sqrt(L)) keys;
- block_sparse (BigBird, Zaheer et al. 2020, §2 and App. D): at block granularity, the block itself and its
  two neighbours, the first g (global) blocks, which also attend to everything, and r random blocks per
  query block, drawn once per layer from a seed so the model is deterministic.
For decoding (a few queries over a KV cache) the same predicate gives the few mask rows directly.
Soft-capped scores (softcap, Gemma 2: cap * tanh(s / cap) before the softmax) are capped blockwise as well."""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from .softcap import soft_cap


class Pattern:
    block: int
    dense_rows: int = 0  # leading query positions that attend to every key (BigBird's global blocks)

    def allowed(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Broadcastable position tensors -> bool: query q may attend key k (before causality, padding)."""
        raise NotImplementedError

    def key_positions(self, n_blocks: int, causal: bool) -> torch.Tensor:
        """(n_blocks, K) key positions each query block gathers (a superset of what it may see); -1: none."""
        raise NotImplementedError


def _blocks_to_positions(blocks: torch.Tensor, block: int) -> torch.Tensor:
    """(n, K) block ids (-1: none) -> (n, K * block) positions (-1: none)."""
    pos = blocks[:, :, None] * block + torch.arange(block, device=blocks.device)
    return torch.where(blocks[:, :, None] >= 0, pos, -1).flatten(1)


class SlidingWindow(Pattern):
    """Keys j with i - j < window and j - i <= ahead (window - 1 unless given: T5Gemma 2's encoder reaches one
    key further ahead than behind)."""

    def __init__(self, window: int, block: int, ahead: int | None = None):
        self.window, self.block = window, block
        self.ahead = window - 1 if ahead is None else ahead

    def allowed(self, q, k):
        return (q - k < self.window) & (k - q <= self.ahead)

    def key_positions(self, n_blocks, causal):
        reach = math.ceil(max(self.window - 1, self.ahead) / self.block)  # neighbouring blocks a window can touch
        offsets = torch.arange(-reach, 1 if causal else reach + 1)
        blocks = torch.arange(n_blocks)[:, None] + offsets
        return _blocks_to_positions(torch.where((blocks >= 0) & (blocks < n_blocks), blocks, -1), self.block)


class FixedStrided(Pattern):
    def __init__(self, stride: int, summary: int):
        if not 0 < summary <= stride:
            raise ValueError("the summary columns must be in (0, stride]")
        self.block, self.summary = stride, summary

    def allowed(self, q, k):
        return (q // self.block == k // self.block) | (k % self.block >= self.block - self.summary)

    def key_positions(self, n_blocks, causal):
        blocks = torch.arange(n_blocks)
        own = _blocks_to_positions(blocks[:, None], self.block)  # (n, l)
        summary = (blocks[:, None] * self.block + torch.arange(self.block - self.summary, self.block)).flatten()
        others = blocks.repeat_interleave(self.summary)[None, :] != blocks[:, None]  # own block's: already in
        return torch.cat([own, torch.where(others, summary, -1)], dim=1)


class BigBird(Pattern):
    def __init__(self, block: int, n_global: int, n_random: int, max_blocks: int, seed: int, causal: bool):
        self.block, self.n_global, self.n_random = block, n_global, n_random
        self.dense_rows = n_global * block
        self.adjacency = self._draw(max_blocks, seed, causal)

    def _draw(self, n: int, seed: int, causal: bool) -> torch.Tensor:
        """bool (n, n): query block -> key blocks. Random blocks are drawn per query block from those the
        window and globals leave out (earlier ones only when causal), from this layer's seed."""
        g = self.n_global
        i = torch.arange(n, device="cpu")  # on the CPU whatever the default device (a model built on meta too)
        adj = ((i[:, None] - i[None, :]).abs() <= 1) | (i[None, :] < g) | (i[:, None] < g)
        gen = torch.Generator().manual_seed(seed)
        for row in range(n):
            free = (~adj[row]).nonzero().flatten()
            if causal:
                free = free[free < row]
            adj[row, free[torch.randperm(len(free), generator=gen)[: self.n_random]]] = True
        return adj

    def allowed(self, q, k):
        adj = self.adjacency.to(q.device)
        return adj[q // self.block, k // self.block]

    def key_positions(self, n_blocks, causal):
        adj = self.adjacency[:n_blocks, :n_blocks].clone()
        adj[: self.n_global] = False  # global query blocks are computed densely (dense_rows)
        adj[: self.n_global, : self.n_global] = True
        width = int(adj.sum(1).max())
        blocks = torch.where(adj, torch.arange(n_blocks), n_blocks).sort(dim=1).values[:, :width]
        return _blocks_to_positions(torch.where(blocks < n_blocks, blocks, -1), self.block)


def row_mask(pattern: Pattern, input_pos: torch.Tensor, key_len: int, causal: bool,
             pad_mask: torch.Tensor | None) -> torch.Tensor:
    """bool (B|1, 1, T, S) for queries at slots input_pos over key slots 0..key_len-1: the pattern's rows,
    with causality and padding (a padded query sees itself, so no row is empty). For decoding and tests."""
    keys = torch.arange(key_len, device=input_pos.device)
    q = input_pos[:, None]
    mask = pattern.allowed(q, keys[None, :]) | (q < pattern.dense_rows)
    if causal:
        mask = mask & (keys[None, :] <= q)
    mask = mask[None]
    if pad_mask is not None:
        mask = (mask & pad_mask[:, None, :key_len].bool()) | (q == keys[None, :])[None]
    return mask[:, None]


def blockwise_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern, causal: bool,
                        scale: float | None, pad_mask: torch.Tensor | None = None, return_lse: bool = False,
                        softcap: float | None = None):
    """Self-attention of L queries over the same L positions (training, prefill): q (B, H, L, D), k and v
    (B, K, L, D) -> (B, H, L, D), each query block over its gathered keys only. return_lse: also the
    log-sum-exp of each query's scores (B, H, L), to merge with attention over other keys (merge_softmax).
    softcap: scores soft-capped before the softmax (patterns without dense rows)."""
    B, H, L, D = q.shape
    scale = D ** -0.5 if scale is None else scale
    bs = pattern.block
    n = math.ceil(L / bs)
    pad = n * bs - L
    qp, kp, vp = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
    keys = pattern.key_positions(n, causal).to(q.device)  # (n, Kn), -1 unused
    keys = torch.where(keys < L, keys, -1)
    qpos = torch.arange(n * bs, device=q.device).view(n, bs, 1)
    kpos = keys[:, None, :]
    mask = pattern.allowed(qpos, kpos.clamp(min=0)) & (kpos >= 0)  # (n, bs, Kn)
    if causal:
        mask = mask & (kpos <= qpos)
    mask = mask[None]
    if pad_mask is not None:
        real = F.pad(pad_mask.bool(), (0, pad))[:, keys.clamp(min=0)]  # (B, n, Kn)
        mask = mask & real[:, :, None, :]
    # every query sees itself: no empty softmax; the queries that pad L to whole blocks see every gathered slot,
    # since an all -inf row's NaN would reach the gradients through the softmax even though its output is dropped
    mask = mask | (kpos == qpos)[None] | (qpos >= L)[None]
    groups = H // k.shape[1]
    kg = kp[:, :, keys.clamp(min=0)].repeat_interleave(groups, dim=1)  # (B, H, n, Kn, D)
    vg = vp[:, :, keys.clamp(min=0)].repeat_interleave(groups, dim=1)
    if softcap is not None and pattern.dense_rows:
        raise ValueError("soft-capping is for patterns without dense rows")
    scores = soft_cap(torch.einsum("bhnqd,bhnkd->bhnqk", qp.view(B, H, n, bs, D), kg) * scale, softcap)
    scores = scores.masked_fill(~mask[:, None], float("-inf"))
    out = torch.einsum("bhnqk,bhnkd->bhnqd", scores.float().softmax(dim=-1).to(q.dtype), vg)
    out = out.reshape(B, H, n * bs, v.shape[-1])[:, :, :L]  # values may be narrower than q, k (value_dim)
    if return_lse:
        if pattern.dense_rows:
            raise ValueError("return_lse is for patterns without dense rows")
        return out, scores.float().logsumexp(dim=-1).reshape(B, H, n * bs)[:, :, :L]
    if pattern.dense_rows:  # global queries attend to every key: a dense (G x L) pass
        G = min(pattern.dense_rows, L)
        rows = row_mask(pattern, torch.arange(G, device=q.device), L, causal, pad_mask)
        dense = F.scaled_dot_product_attention(q[:, :, :G], k, v, attn_mask=rows, scale=scale,
                                               enable_gqa=groups > 1)
        out = torch.cat([dense, out[:, :, G:]], dim=2)
    return out


def merge_softmax(out_a: torch.Tensor, lse_a: torch.Tensor, out_b: torch.Tensor,
                  lse_b: torch.Tensor) -> torch.Tensor:
    """Attention over the union of two disjoint key sets from each set's output and log-sum-exp: the
    outputs weighted by each set's share of the joint normaliser (an lse of -inf: that set is empty)."""
    lse = torch.logaddexp(lse_a, lse_b)
    wa = torch.exp(lse_a - lse).nan_to_num(0.0)[..., None]
    wb = torch.exp(lse_b - lse).nan_to_num(0.0)[..., None]
    return (wa * out_a.float() + wb * out_b.float()).to(out_a.dtype)


def global_positions(global_mask: torch.Tensor) -> torch.Tensor:
    """bool (B, S) -> (B, G) the positions of each row's global tokens, in order, G the largest count (at
    least 1); rows with fewer are filled with other positions (global_mask.gather(1, idx) tells which)."""
    G = max(int(global_mask.sum(1).max()), 1)
    return global_mask.float().topk(G, dim=1, sorted=False).indices.sort(dim=1).values


def global_key_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, global_mask: torch.Tensor,
                         causal: bool, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Every query over the global keys only (Longformer's "everyone attends to the global tokens"): q
    (B, H, L, D), k, v (B, H, S, D), global_mask (B, S) -> output (B, H, L, D) and log-sum-exp (B, H, L).
    The G global positions of each row are gathered: O(L * G)."""
    B, H, L, _ = q.shape
    idx = global_positions(global_mask)  # (B, G)
    G = idx.shape[1]
    valid = global_mask.gather(1, idx)  # rows with fewer globals: padding slots
    kg = k.gather(2, idx[:, None, :, None].expand(B, H, G, k.shape[-1]))
    vg = v.gather(2, idx[:, None, :, None].expand(B, H, G, v.shape[-1]))
    scores = (q @ kg.transpose(-1, -2)).float() * scale  # (B, H, L, G)
    allowed = valid[:, None, None, :]
    if causal:
        allowed = allowed & (idx[:, None, None, :] <= torch.arange(L, device=q.device)[None, None, :, None])
    scores = scores.masked_fill(~allowed, float("-inf"))
    lse = scores.logsumexp(dim=-1)
    probs = torch.exp(scores - lse[..., None]).nan_to_num(0.0)
    return (probs.to(v.dtype) @ vg), lse


_COMPILED_FLEX = None


def flex_sparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: Pattern, causal: bool,
                          scale: float | None, pad_mask: torch.Tensor | None = None, return_lse: bool = False,
                          compiled: bool = True, softcap: float | None = None):
    """The same attention as blockwise_attention through FlexAttention (torch.nn.attention.flex_attention):
    the pattern becomes a mask_mod, and the block mask skips every block of scores it rules out. Compiled, it
    is one fused kernel with a backward on CUDA; this torch's FlexAttention has no CPU backward, so the model
    takes this path on CUDA only (compiled=False runs it unfused, for checking the mask_mod on CPU).
    return_lse: also each query's log-sum-exp (B, H, L), as blockwise_attention gives it."""
    from torch.nn.attention.flex_attention import AuxRequest, create_block_mask, flex_attention

    global _COMPILED_FLEX
    B, H, L, _ = q.shape
    real = pad_mask.bool() if pad_mask is not None else None
    dense_rows = pattern.dense_rows

    def mask_mod(b, h, qi, ki):
        allowed = pattern.allowed(qi, ki) | (qi < dense_rows)
        if causal:
            allowed = allowed & (ki <= qi)
        if real is not None:
            allowed = allowed & real[b, ki]
        return allowed | (qi == ki)  # every query sees itself, as in blockwise_attention

    block_mask = create_block_mask(mask_mod, B if real is not None else None, None, L, L, device=q.device)
    if compiled and _COMPILED_FLEX is None:
        _COMPILED_FLEX = torch.compile(flex_attention, dynamic=False)
    attend = _COMPILED_FLEX if compiled else flex_attention
    mod = _softcap_mod(softcap)
    if not return_lse:
        return attend(q, k, v, score_mod=mod, block_mask=block_mask, scale=scale, enable_gqa=q.shape[1] != k.shape[1])
    out, aux = attend(q, k, v, score_mod=mod, block_mask=block_mask, scale=scale, enable_gqa=q.shape[1] != k.shape[1],
                      return_aux=AuxRequest(lse=True))
    return out, aux.lse


@lru_cache(maxsize=None)
def _softcap_mod(cap: float | None):
    """FlexAttention's score_mod for soft-capped scores (None: none); one function per cap, so the compiled
    kernel is not recompiled for a new closure on every call."""
    if cap is None:
        return None
    return lambda score, b, h, q_idx, kv_idx: soft_cap(score, cap)
