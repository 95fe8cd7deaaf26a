"""Reformer's chunked attention as transformers computes it (Kitaev et al. 2020, "Reformer: The Efficient
Transformer"; transformers' LSHSelfAttention and LocalSelfAttention), over a whole sequence of L slots:

- the sequence, if longer than `above`, is attended as if padded with masked keys to a multiple of `multiple`;
- a sequence of at most c = chunk slots attends as a whole (no chunks, no hashing);
- longer, its slots are cut into chunks of c; chunk n attends to itself, the `before` chunks before it and the
  `after` chunks after it, counted around the sequence (chunk 0's previous chunk is the last one);
- LSH (§3): keys are the queries, RMS-normalised and divided by sqrt(D) (shared QK); each of R rounds hashes a
  query to argmax([xW_r; -xW_r]) of a random rotation W_r (D x b/2, angular LSH after Andoni et al. 2015; masked
  slots to a bucket b of their own); the rounds' slots are sorted by (round, bucket, slot) and chunked as above, a
  query never sees itself unless nothing else is there (its score is -1e5), and the rounds' outputs are weighted by
  softmax over rounds of their log-normalisers (§3 "Multi-round LSH attention", without dividing keys found twice);
- local: scores q.k / sqrt(D) within the positional chunks.
Masked scores are -1e9 (transformers' fp32 mask value), so a query without keys averages them all, as there. Sorted
chunks are not causal: which earlier keys share a query's chunk depends on where later tokens hash."""
from __future__ import annotations

import math

import torch

SELF, MASKED = -1e5, -1e9


def padded_length(L: int, multiple: int, above: int, chunk: int) -> int:
    """The length attended: padded to a multiple of `multiple` when longer than `above`, then, when longer than a
    chunk, to whole chunks (what transformers' padding to its chunk lengths' multiple gives a model's layers)."""
    L = L if multiple <= 0 or L <= above or L % multiple == 0 else L + multiple - L % multiple
    return L if L <= chunk else -(-L // chunk) * chunk


def look_adjacent(t: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """t (B, H, n, c, ...) -> (B, H, n, (before + 1 + after) * c, ...): each chunk's neighbours, then itself, around."""
    if before == 0 and after == 0:
        return t
    return torch.cat([t if i == 0 else torch.cat([t[:, :, i:], t[:, :, :i]], dim=2)
                      for i in range(-before, after + 1)], dim=3)


def attend(q, k, v, qpos, kpos, allowed, causal: bool, self_masked: bool):
    """Scores q k^T (..., Tq, Tk) masked where `allowed` (bool, broadcast to the scores, or None) is False or,
    causal, where the key is later than the query (by slots qpos, kpos); -> the outputs (..., Tq, D) and the
    log-normalisers (..., Tq)."""
    dots = q @ k.transpose(-1, -2)
    if allowed is None:
        allowed = torch.ones((), dtype=torch.bool, device=q.device)
    if causal:
        allowed = allowed & (qpos[..., :, None] >= kpos[..., None, :])
    dots = torch.where(allowed, dots, torch.tensor(MASKED, dtype=dots.dtype, device=dots.device))
    if self_masked:
        dots = torch.where(qpos[..., :, None] != kpos[..., None, :], dots,
                           torch.tensor(SELF, dtype=dots.dtype, device=dots.device))
    lse = dots.logsumexp(dim=-1, keepdim=True)
    return torch.exp(dots - lse) @ v, lse[..., 0]


def _pad(t: torch.Tensor, L: int) -> torch.Tensor:
    return torch.nn.functional.pad(t, (0, 0, 0, L - t.shape[2]))


def _real(real: torch.Tensor | None, L: int, S: int, device) -> torch.Tensor | None:
    """(B, L) bool: the real slots of a sequence of S padded to L (None: all real, no padding)."""
    if real is None and L == S:
        return None
    real = torch.ones(1, S, dtype=torch.bool, device=device) if real is None else real.bool()
    return torch.nn.functional.pad(real, (0, L - S), value=False)


def local_chunks(q, k, v, real, chunk, before, after, causal, multiple=0, above=0):
    """q, k, v (B, H, S, D), real (B, S) or None -> (B, H, S, D): transformers' LocalSelfAttention."""
    B, H, S, D = q.shape
    L = padded_length(S, multiple, above, chunk)
    real = _real(real, L, S, q.device)
    q, k, v = _pad(q, L), _pad(k, L) / math.sqrt(D), _pad(v, L)
    pos = torch.arange(L, device=q.device)
    if L <= chunk:
        out, _ = attend(q, k, v, pos, pos, None if real is None else real[:, None, None, :], causal, False)
        return out[:, :, :S]
    n = L // chunk

    def chunks(t):
        return look_adjacent(t.view(B, H, n, chunk, D), before, after)

    qpos = pos.view(1, 1, n, chunk)
    keys_real = None if real is None else look_adjacent(real.view(-1, 1, n, chunk), before, after)[..., None, :]
    out, _ = attend(q.view(B, H, n, chunk, D), chunks(k), chunks(v), qpos, look_adjacent(qpos, before, after),
                    keys_real, causal, False)
    return out.reshape(B, H, L, D)[:, :, :S]


def rotations(heads: int, head_dim: int, rounds: int, buckets: int, seed: int) -> torch.Tensor:
    """(H, D, R, b/2): the draw transformers makes after torch.manual_seed(hash_seed), on the CPU in fp32."""
    gen = torch.Generator().manual_seed(seed)
    # on the CPU whatever the default device: a model built on meta to be filled from a checkpoint needs them
    return torch.randn((heads, head_dim, rounds, buckets // 2), generator=gen, device="cpu")


def _hash(qk, real, rot, buckets) -> torch.Tensor:
    """(B, H, R * L): each round's bucket of each slot, offset by round (masked slots in a bucket of their own)."""
    R = rot.shape[2]
    rotated = torch.einsum("bhld,hdrn->bhrln", qk, rot.to(qk.device, qk.dtype))
    bucket = torch.cat([rotated, -rotated], dim=-1).argmax(dim=-1)  # (B, H, R, L)
    if real is not None:  # masked slots hash to a bucket of their own, sorted last in each round
        bucket = torch.where(real[:, None, None], bucket, buckets)
    return (bucket + torch.arange(R, device=qk.device)[:, None] * (buckets + 1)).flatten(2)


def lsh_chunks(qk, v, real, rot, buckets, chunk, before, after, causal, multiple=0, above=0, hashes=None):
    """qk (B, H, S, D) the shared query-keys before normalising, v (B, H, S, D), real (B, S) or None, rot
    (H, D, R, b/2) -> (B, H, S, D): transformers' LSHSelfAttention over a whole sequence. hashes: a dict whose
    "buckets" are used if there, else kept there (a reversible backward's recomputation hashes as its forward did,
    as transformers' cached buckets), or None."""
    B, H, S, D = qk.shape
    L = padded_length(S, multiple, above, chunk)
    real = _real(real, L, S, qk.device)
    qk, v = _pad(qk, L), _pad(v, L)
    keys = qk * torch.rsqrt(qk.pow(2).mean(-1, keepdim=True) + 1e-6) / math.sqrt(D)
    pos = torch.arange(L, device=qk.device)
    if L <= chunk:
        out, _ = attend(qk, keys, v, pos, pos, None if real is None else real[:, None, None, :], causal, True)
        return out[:, :, :S]
    R = rot.shape[2]
    bucket = None if hashes is None else hashes.get("buckets")
    if bucket is None:
        bucket = _hash(qk, real, rot, buckets)
    if hashes is not None:
        hashes["buckets"] = bucket
    N = R * L
    order = (bucket * N + torch.arange(N, device=qk.device)).argsort(dim=-1)  # by round, bucket, then slot
    spos = order % L  # (B, H, N): the slot at each sorted place
    n = N // chunk

    def sort(t):  # (B, H, L, D) -> (B, H, n, c, D) in each round's sorted order
        return t.gather(2, spos[..., None].expand(-1, -1, -1, D)).view(B, H, n, chunk, D)

    qpos = spos.view(B, H, n, chunk)
    kpos = look_adjacent(qpos, before, after)
    keys_real = None if real is None else real[:, None, None].expand(B, H, n, L).gather(-1, kpos)[..., None, :]
    out, lse = attend(sort(qk), look_adjacent(sort(keys), before, after), look_adjacent(sort(v), before, after),
                      qpos, kpos, keys_real, causal, True)
    back = order.argsort(dim=-1)  # sorted places back to (round, slot)
    out = out.reshape(B, H, N, D).gather(2, back[..., None].expand(-1, -1, -1, D)).view(B, H, R, L, D)
    lse = lse.reshape(B, H, N).gather(2, back).view(B, H, R, L, 1)
    # exp(l - logsumexp(l)) as transformers has it, not softmax: the scores of a query that sees only itself are near
    # -1e5, where fp32 rounds the two differently by ~1e-3
    return (out * torch.exp(lse - lse.logsumexp(dim=2, keepdim=True))).sum(dim=2)[:, :, :S]
