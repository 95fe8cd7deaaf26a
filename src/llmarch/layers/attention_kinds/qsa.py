"""QSA, Qwen4-Exp's block-sparse token selection (transformers' Qwen4ExpTextQSAIndexer): full attention in which each
query attends only to the tokens of the complete blocks a small indexer scores highest, and to the newest tokens.
A query at position p sees the tokens at positions 0..p of its row (padding aside), cut into blocks of qsa_block
consecutive ones, b_j = positions [j·r, (j + 1)·r), complete while (j + 1)·r <= p + 1. The indexer (qsa_proj, from
the attention's input x) gives J = qsa_heads query heads q_{p,h} (normed per head, qsa_q_norm, and turned by RoPE at
p) and one raw key per token; a block's key is the mean of its tokens' raw keys, normed (qsa_k_norm) and turned by
RoPE at the block's first position j·r. Its score for the query, in fp32:
    s_{p,j} = sum_h ReLU(q_{p,h} · k_j) / sqrt(qsa_head_dim)
The query attends to the tokens of its qsa_budget / qsa_block best complete blocks and to the incomplete block
holding p (the latest < r tokens), through a mask on the dense attention (the same outputs, not a sparse kernel's
speed; ties in the top-k go to the earlier block). RoPE turns the first rotary dims of the indexer's width, at the
attention's frequencies. Each token's raw indexer key is cached beside its keys and values.
Shapes: B batch, T queries, S key slots, J indexer heads, D = qsa_head_dim, N blocks."""
from __future__ import annotations

import torch

from ...errors import LlmarchError
from ..dsa import visible_keys
from ..kv_cache import KVCache
from ..linear import Linear
from ..norms import make_norm
from ..positions import apply_rotary
from .kind import ATTENTION_KINDS, AttentionKind, cached_kv


class IndexedKVCache(KVCache):
    """A KV cache with one more row per slot: the indexer's raw key (B, S, D)."""

    def __init__(self, batch: int, n_kv_heads: int, max_len: int, head_dim: int, index_dim: int, dtype, device):
        super().__init__(batch, n_kv_heads, max_len, head_dim, dtype, device)
        self.register_buffer("index", torch.zeros(batch, max_len, index_dim, dtype=dtype, device=device),
                             persistent=False)

    @property
    def nbytes(self) -> int:
        return super().nbytes + self.index.numel() * self.index.element_size()

    def update_index(self, input_pos: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Write keys (B, T, D) at slots input_pos; return every slot's (B, S, D)."""
        self.index.index_copy_(1, input_pos, keys.to(self.index.dtype))
        return self.index

    def reorder(self, rows: torch.Tensor) -> None:
        super().reorder(rows)
        self.index = self.index.index_select(0, rows)

    def put_row(self, row: int, src: "IndexedKVCache", start: int, length: int) -> None:
        super().put_row(row, src, start, length)
        self.index[row, start:start + length] = src.index[0, :length]

    def rows(self, n: int) -> "IndexedKVCache":
        view = IndexedKVCache(0, 0, 0, 0, 0, self.k.dtype, "meta")
        view.k, view.v, view.index = self.k[:n], self.v[:n], self.index[:n]
        return view

    def shift(self, n: int) -> None:
        super().shift(n)
        self.index.copy_(self.index.roll(-n, dims=1))


@ATTENTION_KINDS.register("qsa")
class QSA(AttentionKind):
    uses_mask = True
    takes_sinks = True
    softcaps = True

    def __init__(self, cfg, layer: int):
        super().__init__(cfg, layer)
        self.heads, self.dim, self.block = cfg.qsa_heads, cfg.qsa_head_dim, cfg.qsa_block
        self.top = cfg.qsa_budget // cfg.qsa_block
        self.cache_note = f"plus the QSA indexer's key, {self.dim} per token"

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        if min(cfg.qsa_heads, cfg.qsa_head_dim, cfg.qsa_budget, cfg.qsa_block) <= 0 or cfg.qsa_budget % cfg.qsa_block:
            raise LlmarchError(f"qsa_heads, qsa_head_dim, qsa_budget and qsa_block must be positive and qsa_budget a "
                               f"multiple of qsa_block, got {cfg.qsa_heads}, {cfg.qsa_head_dim}, {cfg.qsa_budget}, "
                               f"{cfg.qsa_block}")
        rotary = int(cfg.head_dim * cfg.rope_fraction) if cfg.positions == "rope" else 0
        if not cfg.causal or cfg.positions not in ("rope", "none") or cfg.position_offset or rotary > cfg.qsa_head_dim:
            raise LlmarchError("attention='qsa' needs a causal stack with RoPE (or none), no position_offset, and "
                               f"qsa_head_dim={cfg.qsa_head_dim} >= the {rotary} rotary dims")

    def modules(self, cfg, layer: int) -> dict:
        return {"qsa_proj": Linear(cfg.d_model, (self.heads + 1) * self.dim, bias=False),
                "qsa_q_norm": make_norm(cfg, self.dim), "qsa_k_norm": make_norm(cfg, self.dim)}

    def new_state(self, attn, batch: int, max_len: int, dtype: torch.dtype, device):
        return IndexedKVCache(batch, attn.kv_heads, max_len, attn.head_dim, self.dim, dtype, device)

    def cache_bytes(self, attn, dtype: torch.dtype, max_len: int) -> tuple[int, int]:
        return (2 * attn.kv_heads * attn.head_dim + self.dim) * torch.empty((), dtype=dtype).element_size(), 0

    def attend(self, attn, x, q, k, v, ctx, dropout_p):
        sub = attn._modules
        B, T, _ = x.shape
        iq, keys = sub["qsa_proj"](x).split([self.heads * self.dim, self.dim], dim=-1)
        iq = sub["qsa_q_norm"](iq.view(B, T, self.heads, self.dim)).transpose(1, 2)  # (B, J, T, D)
        if ctx.rope is not None:
            iq = apply_rotary(iq, *ctx.rope)
        cache = sub.get("cache")
        if cache is not None:
            keys = cache.update_index(ctx.input_pos, keys)[:, : ctx.kv_len]  # (B, S, D)
        k, v = cached_kv(attn, k, v, ctx)
        mask = self.select(attn, iq, keys, ctx)
        return attn.kernel(q, k, v, mask, False, dropout_p, sub["hook_pattern"], attn.scale, attn.sinks)

    @torch.no_grad()
    def select(self, attn, iq: torch.Tensor, keys: torch.Tensor, ctx) -> torch.Tensor:
        """bool (B, 1, T, S): the keys each query attends to."""
        B, _, T, _ = iq.shape
        S, r = keys.shape[1], self.block
        visible = visible_keys(ctx, T, S, keys.device)  # (B|1, 1, T, S)
        if ctx.pad_mask is None:  # each slot's position in its row, -1 for padding, and the queries'
            kpos = torch.arange(S, device=keys.device)[None]
        else:
            kpos = torch.where(ctx.pad_mask, ctx.pad_mask.long().cumsum(-1) - 1, -1)
        qpos = ctx.input_pos[None] if ctx.positions is None else ctx.positions  # (B|1, T)
        n = -(-S // r)
        block = torch.where(kpos >= 0, kpos // r, -1)  # (B|1, S)
        member = (block[..., None] == torch.arange(n, device=keys.device)).float()  # (B|1, S, N)
        pooled = (member.transpose(1, 2) @ keys.float() / r).to(keys.dtype)  # (B, N, D) the blocks' mean keys
        pooled = attn._modules["qsa_k_norm"](pooled)[:, None]  # (B, 1, N, D)
        if ctx.rope is not None:
            if ctx.rotary is None:
                raise LlmarchError("attention='qsa' needs the rotary tables of the forward (not packed documents)")
            pooled = apply_rotary(pooled, *ctx.rotary(torch.arange(n, device=keys.device)[None] * r))
        scores = torch.relu(iq.float() @ pooled.float().transpose(-1, -2)).sum(1) * self.dim ** -0.5  # (B, T, N)
        complete = (torch.arange(1, n + 1, device=keys.device) * r) <= qpos[..., None] + 1  # (B|1, T, N)
        scores = scores.masked_fill(~complete, float("-inf"))
        best = scores.sort(dim=-1, descending=True, stable=True).indices[..., : self.top]
        keep = torch.zeros_like(complete.expand(B, T, n)).scatter_(-1, best, True) & complete | ~complete
        chosen = keep.gather(-1, block.clamp(min=0)[:, None].expand(B, T, S)) & (block >= 0)[:, None]  # (B, T, S)
        chosen = chosen[:, None] & visible
        return chosen | visible & ~chosen.any(-1, keepdim=True)  # a padded query keeps what it saw (itself)
