"""Multi-head self-attention (Vaswani et al. 2017, eq. 1: softmax(QK^T / sqrt(d)) V) with any number of
key/value heads: n_kv_heads = n_heads is MHA, 1 is MQA (Shazeer 2019), in between GQA (Ainslie et al. 2023).
The kernel is chosen by name: `sdpa` (torch's fused scaled_dot_product_attention) or `eager`, which
materialises the attention pattern (hook_pattern) for analysis and serves as the reference.
Shapes: B batch, T query length, S key length, H query heads, K key/value heads, D head dim."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LlmarchError
from ..registry import Registry
from .hooks import HookPoint
from .kv_cache import KVCache
from .linear_attention import EluFeatures, FavorFeatures, linear_attention
from .lsh_attention import LSH, lsh_attention, shared_keys, union_mask
from .sparse_attention import (BigBird, FixedStrided, SlidingWindow, blockwise_attention, flex_sparse_attention,
                               global_key_attention, global_positions, merge_softmax, row_mask)
from .norms import make_norm
from .positions import apply_rotary

ATTENTION: Registry = Registry("attention implementation")


@dataclass
class AttentionContext:
    """What every attention layer of one forward pass shares, computed once by the model."""

    # bool (B|1, 1, T, S), True = may attend, or float (B|1, H|1, T, S) added to the scores (a position bias
    # with -inf where attention is barred); None with causal: plain causal T == S
    mask: torch.Tensor | None
    causal: bool
    rope: tuple[torch.Tensor, torch.Tensor] | None  # (cos, sin), each (B, T, D)
    input_pos: torch.Tensor  # (T,) cache slots of this call's tokens
    kv_len: int | None = None  # cache slots filled after this call: attend to these only (eager decoding)
    memory: torch.Tensor | None = None  # (B, S, C) encoder output that cross-attention reads (encoder-decoders)
    memory_mask: torch.Tensor | None = None  # bool (B, 1, 1, S): real source tokens; None: all real
    pad_mask: torch.Tensor | None = None  # bool (B, S): real key slots, for kinds that build their own masks
    global_mask: torch.Tensor | None = None  # bool (B, S): Longformer's global tokens (attention="longformer")


@ATTENTION.register("sdpa")
def sdpa_attention(q, k, v, mask, causal, dropout_p, pattern_hook, scale=None):
    is_causal = causal and mask is None
    if mask is not None and mask.dtype != torch.bool:
        mask = mask.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal,
                                          scale=scale, enable_gqa=q.shape[1] != k.shape[1])


@ATTENTION.register("eager")
def eager_attention(q, k, v, mask, causal, dropout_p, pattern_hook, scale=None):
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)  # (B, H, S, D)
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale  # (B, H, T, S)
    if mask is None and causal:
        T, S = scores.shape[-2:]
        mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)
    if mask is not None and mask.dtype == torch.bool:
        scores = scores.masked_fill(~mask, float("-inf"))
    elif mask is not None:
        scores = scores + mask
    pattern = pattern_hook(scores.float().softmax(dim=-1).to(q.dtype))
    pattern = F.dropout(pattern, p=dropout_p, training=dropout_p > 0)
    return pattern @ v


def split_heads(t: torch.Tensor, n: int, d: int) -> torch.Tensor:
    """(B, T, n*d) -> (B, n, T, d)."""
    return t.view(t.shape[0], t.shape[1], n, d).transpose(1, 2)


def attention_setup(module: nn.Module, cfg) -> None:
    """What self- and cross-attention both take from the config: head counts and width, dropout, the score
    scale and the kernel."""
    module.n_heads, module.n_kv_heads, module.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    module.dropout, module.scale, module.kernel = cfg.dropout, cfg.attn_scale, ATTENTION[cfg.attn_impl]


class Attention(nn.Module):
    def __init__(self, cfg, layer: int = 0):
        super().__init__()
        attention_setup(self, cfg)
        self.causal = cfg.causal
        self.pattern, self.features = make_kind(cfg, layer)  # both None for full attention
        self.window = cfg.sliding_window if cfg.attention == "sliding_window" and cfg.causal else None
        self.lsh = LSH(cfg.head_dim, cfg.lsh_buckets, cfg.lsh_rounds, cfg.attention_block, cfg.attention_seed + layer) \
            if cfg.attention == "lsh" else None
        if cfg.attention == "longformer":  # global tokens' own q, k, v projections (Beltagy et al. 2020, §3.1)
            self.qkv_global = nn.Linear(cfg.d_model, 3 * self.n_heads * self.head_dim, bias=cfg.qkv_bias)
        # q, k and v projections fused into one matmul (rows: H·D of q, then K·D of k, then K·D of v):
        # one weight read instead of three, which is what one-token decoding waits on.
        # lsh shares queries and keys (Reformer): no key projection
        self.qkv_heads = [self.n_heads, 0 if cfg.attention == "lsh" else self.n_kv_heads, self.n_kv_heads]
        self.qkv_proj = nn.Linear(cfg.d_model, sum(self.qkv_heads) * self.head_dim, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, cfg.d_model, bias=cfg.bias)
        # QK-norm (Dehghani et al. 2023; Qwen3): each head's queries and keys normalised before RoPE, which
        # bounds the attention logits
        self.q_norm = make_norm(cfg, cfg.head_dim) if cfg.qk_norm == "head" else None
        self.k_norm = make_norm(cfg, cfg.head_dim) if cfg.qk_norm == "head" else None
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()
        self.hook_pattern, self.hook_z = HookPoint(), HookPoint()
        self.kv_cache: KVCache | None = None

    def qk_normed(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q, k (..., D) through the QK-norm, if the config has one."""
        if self.q_norm is None:
            return q, k
        return self.q_norm(q), self.k_norm(k)

    def forward(self, x: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        B, T, _ = x.shape
        qkv = self.qkv_proj(x).view(B, T, sum(self.qkv_heads), self.head_dim)
        q, k, v = qkv.split(self.qkv_heads, dim=2)  # one split of the heads axis: fewer ops per decoded token
        q, k = self.qk_normed(q, k)
        q = self.hook_q(q).transpose(1, 2)  # (B, H, T, D)
        k = self.hook_k(k).transpose(1, 2)  # (B, K, T, D)
        v = self.hook_v(v).transpose(1, 2)  # (B, K, T, D)
        if ctx.rope is not None:
            q, k = apply_rotary(q, *ctx.rope), apply_rotary(k, *ctx.rope)
        if self.features is not None:
            return self.o_proj(self._linear(q, k, v, ctx).transpose(1, 2).reshape(B, T, -1))
        if self.lsh is not None:
            k = shared_keys(q)  # the keys are the unit-normalised queries (cached as such for decoding)
        if self.kv_cache is not None:
            k, v = self.kv_cache.update(ctx.input_pos, k, v)  # (B, K, S, D)
            if ctx.kv_len is not None:
                k, v = k[:, :, : ctx.kv_len], v[:, :, : ctx.kv_len]
        dropout_p = self.dropout if self.training else 0.0
        if hasattr(self, "qkv_global") and ctx.global_mask is not None and bool(ctx.global_mask.any()):
            y = self._longformer(x, q, k, v, ctx, dropout_p)
        elif self.lsh is not None:
            y = self._lsh(q, k, v, ctx, dropout_p)
        elif self.pattern is not None and q.shape[2] == k.shape[2] and q.is_cuda:  # a whole sequence on CUDA
            y = flex_sparse_attention(q, k, v, self.pattern, self.causal, self.scale, ctx.pad_mask)
        elif self.pattern is not None and q.shape[2] == k.shape[2]:  # a whole sequence: blockwise, no L x L
            y = blockwise_attention(q, k, v, self.pattern, self.causal, self.scale, ctx.pad_mask)
        elif self.window is not None and T == 1 and ctx.kv_len is not None:  # one token: read the window only,
            start = max(ctx.kv_len - self.window, 0)  # so a decoded token's cost is bounded by it, not the context
            mask = None if ctx.pad_mask is None else ctx.pad_mask[:, None, None, start:ctx.kv_len]
            y = self.kernel(q, k[:, :, start:], v[:, :, start:], mask, False, dropout_p, self.hook_pattern, self.scale)
        else:
            mask = ctx.mask
            if self.pattern is not None:  # a few queries over a cache: the pattern's rows of the mask
                mask = row_mask(self.pattern, ctx.input_pos, k.shape[2], self.causal, ctx.pad_mask)
            y = self.kernel(q, k, v, mask, ctx.causal, dropout_p, self.hook_pattern, self.scale)  # (B, H, T, D)
        y = self.hook_z(y.transpose(1, 2))  # (B, T, H, D)
        return self.o_proj(y.reshape(B, T, self.n_heads * self.head_dim))

    def _linear(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        """linear / performer: features of q and k (keys at padding zeroed), then linear_attention, carrying
        the recurrent state in place of a KV cache when generating."""
        groups = self.n_heads // self.n_kv_heads
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        fq, fk = self.features(q, True), self.features(k, False)
        if ctx.pad_mask is not None:
            fk = fk * ctx.pad_mask[:, ctx.input_pos][:, None, :, None]
        return linear_attention(fq, fk, v, self.causal, self.kv_cache).to(q.dtype)

    def _lsh(self, q, k, v, ctx: AttentionContext, dropout_p: float) -> torch.Tensor:
        """Reformer's LSH attention (lsh_attention.py): chunked rounds over a whole sequence; a few queries over
        a cache attend to the keys they share a bucket with in any round."""
        scale = q.shape[-1] ** -0.5 if self.scale is None else self.scale
        if q.shape[2] == k.shape[2]:
            return lsh_attention(q, v, self.lsh, self.causal, scale, ctx.pad_mask)
        mask = union_mask(self.lsh, shared_keys(q), k, ctx.input_pos, self.causal, ctx.pad_mask)
        return self.kernel(q, k, v, mask.to(q.dtype), False, dropout_p, self.hook_pattern, self.scale)

    def _longformer(self, x, q, k, v, ctx: AttentionContext, dropout_p: float) -> torch.Tensor:
        """Longformer (Beltagy et al. 2020, §3.1): the sliding window, plus global tokens (ctx.global_mask)
        that every query attends to (with the usual keys, merged into one softmax with the window's) and that
        attend to every token through their own projections, qkv_global. A global key is not counted twice:
        it leaves the window (as transformers' LongformerSelfAttention does)."""
        B, H, T, D = q.shape
        S = k.shape[2]
        scale = D ** -0.5 if self.scale is None else self.scale
        pad = ctx.pad_mask if ctx.pad_mask is not None else torch.ones(B, S, dtype=torch.bool, device=q.device)
        glob = ctx.global_mask[:, :S] & pad
        groups = self.n_heads // self.n_kv_heads
        if T != S:  # decoding: window rows without the globals, plus the (earlier) global keys
            if bool(glob[:, ctx.input_pos].any()):
                raise LlmarchError("longformer: a new token cannot be global while decoding from a cache")
            mask = row_mask(self.pattern, ctx.input_pos, S, self.causal, pad & ~glob)
            seen = glob[:, None, None, :]
            if self.causal:
                seen = seen & (torch.arange(S, device=q.device) <= ctx.input_pos[:, None])[None, None]
            return self.kernel(q, k, v, mask | seen, False, dropout_p, self.hook_pattern, self.scale)
        local, lse_local = blockwise_attention(q, k, v, self.pattern, self.causal, scale, pad & ~glob, True)
        k_all, v_all = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        to_global, lse_global = global_key_attention(q, k_all, v_all, glob, self.causal, scale)
        y = merge_softmax(local, lse_local, to_global, lse_global)
        # the global tokens' own rows: their global query over every (earlier) real key
        qg, kg, vg = (t.transpose(1, 2) for t in self.qkv_global(x).view(B, T, 3, H, D).unbind(2))  # (B, H, T, D)
        idx = global_positions(glob)  # (B, G) global positions (+ filler)
        G = idx.shape[1]
        rows = qg.gather(2, idx[:, None, :, None].expand(B, H, G, D))
        allowed = pad[:, None, None, :]
        if self.causal:
            allowed = allowed & (torch.arange(S, device=q.device)[None, None, None, :] <= idx[:, None, :, None])
        out = F.scaled_dot_product_attention(rows, kg, vg, attn_mask=allowed, scale=scale)  # (B, H, G, D)
        real = glob.gather(1, idx)[:, None, :, None]
        current = y.gather(2, idx[:, None, :, None].expand(B, H, G, D))
        return y.scatter(2, idx[:, None, :, None].expand(B, H, G, D), torch.where(real, out.to(y.dtype), current))


def make_kind(cfg, layer: int):
    """(sparsity pattern, feature map) of the configured attention kind; (None, None) for full attention."""
    kind, seed = cfg.attention, cfg.attention_seed + layer
    if kind in ("sliding_window", "longformer"):
        return SlidingWindow(cfg.sliding_window, cfg.attention_block), None
    if kind == "strided":
        return FixedStrided(cfg.attention_block, cfg.strided_summary), None
    if kind == "block_sparse":
        blocks = -(-cfg.context_length // cfg.attention_block)
        return BigBird(cfg.attention_block, cfg.global_blocks, cfg.random_blocks, blocks, seed, cfg.causal), None
    if kind == "linear":
        return None, EluFeatures()
    if kind == "performer":
        scale = cfg.attn_scale if cfg.attn_scale is not None else cfg.head_dim ** -0.5
        return None, FavorFeatures(cfg.head_dim, cfg.performer_features, scale, seed)
    return None, None
