"""Locality-sensitive-hashing attention (Reformer, Kitaev et al. 2020, §3): queries attend only to keys that
hash to the same bucket, which are the likely large q.k.

- Shared QK: keys are the unit-normalised queries, k_j = q_j / |q_j|, so a query and its key hash alike.
- Angular LSH (§3, after Andoni et al. 2015): h(x) = argmax([xR; -xR]) for a random rotation R (D x b/2);
  n_rounds independent hashes, fixed per layer by a seed so the model is deterministic.
- Per round, positions are sorted by (bucket, position) and cut into chunks of c; each chunk attends to
  itself and the chunk before it, only to keys of its own bucket: O(L * c) per round.
- A token does not attend to itself unless nothing else is there (its score is set to -1e5, §3).
- Rounds are merged into one softmax over the union of the keys any round found: each round's scores are
  lowered by log N_ij, the number of rounds in which i and j share a bucket, and the rounds' outputs weighted
  by their share of the joint normaliser (§3 "Multi-round LSH attention"). With chunks covering the whole
  sequence this is exactly softmax attention over {j : i and j share a bucket in some round}; that set is
  what decoding (a few queries over a KV cache of normalised keys) attends to directly.
- Causal models attend to exactly that set, restricted to earlier keys (causal_lsh_attention). Sorted chunks
  are not causal: which earlier keys share a query's chunk depends on where later tokens hash, so a later
  token would change earlier outputs, and training would compute something other than cached decoding."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SELF = -1e5  # a token's score for itself (Reformer's value)


class LSH:
    def __init__(self, head_dim: int, n_buckets: int, n_rounds: int, chunk: int, seed: int):
        if n_buckets < 2 or n_buckets % 2:
            raise ValueError("n_buckets must be even and >= 2")
        gen = torch.Generator().manual_seed(seed)
        # on the CPU whatever the default device: a model built on meta to be filled from a checkpoint needs them
        self.rotations = torch.randn(n_rounds, head_dim, n_buckets // 2, generator=gen, device="cpu")
        self.n_buckets, self.chunk = n_buckets, chunk

    def buckets(self, k: torch.Tensor) -> torch.Tensor:
        """k (B, H, L, D) -> bucket ids (R, B, H, L)."""
        rotated = torch.einsum("bhld,rdn->rbhln", k.float(), self.rotations.to(k.device))
        return torch.cat([rotated, -rotated], dim=-1).argmax(dim=-1)


def shared_keys(q: torch.Tensor) -> torch.Tensor:
    return F.normalize(q.float(), dim=-1).to(q.dtype)


def union_mask(lsh: LSH, q_keys: torch.Tensor, k: torch.Tensor, input_pos: torch.Tensor, causal: bool,
               pad_mask: torch.Tensor | None) -> torch.Tensor:
    """Float mask (B, H, T, S) to add to the scores of queries at slots input_pos over key slots 0..S-1:
    0 where the pair shares a bucket in some round, SELF on the diagonal, -inf elsewhere (and where causality
    or padding bar the key). q_keys (B, H, T, D): the queries' own normalised keys."""
    S = k.shape[2]
    shared = (lsh.buckets(q_keys)[..., :, None] == lsh.buckets(k)[..., None, :]).any(dim=0)  # (B, H, T, S)
    keys = torch.arange(S, device=k.device)
    allowed = shared
    if causal:
        allowed = allowed & (keys[None, :] <= input_pos[:, None])
    if pad_mask is not None:
        allowed = allowed & pad_mask[:, None, None, :S].bool()
    mask = torch.zeros(allowed.shape, device=k.device).masked_fill(~allowed, float("-inf"))
    return torch.where(keys[None, :] == input_pos[:, None], torch.tensor(SELF, device=k.device), mask)


def causal_lsh_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lsh: LSH, input_pos: torch.Tensor,
                         scale: float, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Queries q (B, H, T, D) at slots input_pos (T,) over keys k (normalised, as shared_keys makes them) and
    values v (B, H, S, D) at slots 0..S-1: each query attends to the earlier keys it shares a bucket with in
    some round (itself at SELF). Computed lsh.chunk queries at a time, so the mask held is (chunk, S), not
    (T, S). -> (B, H, T, D)."""
    q_keys = shared_keys(q)
    out = []
    for start in range(0, q.shape[2], lsh.chunk):
        rows = slice(start, start + lsh.chunk)
        mask = union_mask(lsh, q_keys[:, :, rows], k, input_pos[rows], True, pad_mask)
        out.append(F.scaled_dot_product_attention(q[:, :, rows], k, v, attn_mask=mask.to(q.dtype), scale=scale))
    return torch.cat(out, dim=2)


def lsh_attention(q: torch.Tensor, v: torch.Tensor, lsh: LSH, causal: bool, scale: float,
                  pad_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Self-attention of L queries over the same L positions (training, prefill): q, v (B, H, L, D) ->
    (B, H, L, D). Bidirectional: chunked per round; causal: causal_lsh_attention."""
    B, H, L, D = q.shape
    k = shared_keys(q)
    if causal:
        return causal_lsh_attention(q, k, v, lsh, torch.arange(L, device=q.device), scale, pad_mask)
    buckets = lsh.buckets(k)  # (R, B, H, L)
    R, c = buckets.shape[0], min(lsh.chunk, L)
    n = math.ceil(L / c)
    Lp = n * c
    pos = torch.arange(Lp, device=q.device)
    padded = F.pad(buckets, (0, Lp - L), value=lsh.n_buckets)  # filler positions sort last, in no bucket
    order = (padded * Lp + pos).argsort(dim=-1)  # (R, B, H, Lp): by bucket, then position
    qp, kp, vp = (F.pad(t, (0, 0, 0, Lp - L)) for t in (q, k, v))

    def sort(t):  # (B, H, Lp, D) -> (R, B, H, n, c, D) in each round's order
        return t[None].expand(R, -1, -1, -1, -1).gather(3, order[..., None].expand(-1, -1, -1, -1, D)).view(
            R, B, H, n, c, D)

    sq, sk, sv = sort(qp), sort(kp), sort(vp)
    sb = padded.gather(-1, order).view(R, B, H, n, c)
    spos = order.view(R, B, H, n, c)

    def look_back(t):  # each chunk's keys: the chunk before it, then itself
        return t if n == 1 else torch.cat([t.roll(1, dims=3), t], dim=4)

    kk, vv, kb, kpos = look_back(sk), look_back(sv), look_back(sb), look_back(spos)
    scores = torch.einsum("rbhncd,rbhnkd->rbhnck", sq.float(), kk.float()) * scale
    allowed = (sb[..., :, None] == kb[..., None, :]) & (kpos[..., None, :] < L)
    if pad_mask is not None:
        real = F.pad(pad_mask.bool(), (0, Lp - L))  # (B, Lp)
        rows = torch.arange(B, device=q.device)[None, :, None, None, None]
        allowed = allowed & real[rows, kpos][..., None, :]  # (R, B, H, n, 1, K)
    # N_ij: rounds in which i and j share a bucket (at least this one, where allowed)
    every = F.pad(buckets, (0, Lp - L), value=-1)  # (R', B, H, Lp)
    bq = every[:, None].expand(R, R, B, H, Lp).gather(-1, spos.reshape(1, R, B, H, n * c).expand(R, -1, -1, -1, -1))
    bk = every[:, None].expand(R, R, B, H, Lp).gather(-1, kpos.reshape(1, R, B, H, -1).expand(R, -1, -1, -1, -1))
    counts = (bq.view(R, R, B, H, n, c, 1) == bk.view(R, R, B, H, n, 1, -1)).sum(dim=0).clamp(min=1)
    scores = scores - counts.float().log()
    scores = scores.masked_fill(~allowed, float("-inf"))
    scores = torch.where(kpos[..., None, :] == spos[..., :, None], torch.tensor(SELF, device=q.device), scores)
    lse = scores.logsumexp(dim=-1)  # (R, B, H, n, c)
    out = torch.einsum("rbhnck,rbhnkd->rbhncd", torch.exp(scores - lse[..., None]), vv.float())
    # back to positions, then one softmax over the rounds' union
    back = order.argsort(dim=-1)
    out = out.view(R, B, H, Lp, D).gather(3, back[..., None].expand(-1, -1, -1, -1, D))[:, :, :, :L]
    lse = lse.view(R, B, H, Lp).gather(3, back)[:, :, :, :L]
    weights = lse.softmax(dim=0)[..., None]
    return (weights * out).sum(dim=0).to(q.dtype)
