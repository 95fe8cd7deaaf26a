"""The byte-level parts of BLT (Pagnoni et al. 2024, "Byte Latent Transformer: Patches Scale Better Than Tokens"):
hash n-gram embeddings (§3.2.1), entropy patching (§2.3), the pooling of bytes into patches and the cross-attention
between patches and bytes (§3.2.2, §3.3). Shapes: B rows, T bytes, P patches, C width, k = patch_cross_k."""
from __future__ import annotations

import torch
from torch import nn

from .linear import Linear
from .norms import make_norm

# the bases of BLT's rolling polynomial hashes, one per hash function (cycled past the eleventh)
PRIMES = (1000000007, 5915587277, 1500450271, 3267000013, 5754853343, 4093082899, 9576890767, 3628273133,
          2860486313, 5463458053, 3367900313)


class HashNgramEmbedding(nn.Module):
    """e_i = E[x_i] + sum over functions f and sizes n of E_hash[hash_f(x_{i-n+1..i}) mod V + offset] (BLT eq. 2-3):
    the n-gram ending at each byte (zeros before the start), hashed as sum_j x_j p_f^j in int64 (wrapping as
    transformers' does), one table of V rows per (function, size)."""

    def __init__(self, cfg):
        super().__init__()
        self.sizes, self.vocab = list(cfg.hash_ngram_sizes), cfg.hash_ngram_vocab
        self.functions = cfg.hash_ngram_functions
        self.weight = nn.Parameter(torch.zeros(self.vocab * self.functions * len(self.sizes), cfg.d_model))

    def forward(self, ids: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:  # ids (B, T), embeds (B, T, C)
        table = 0
        for f in range(self.functions):
            prime = torch.tensor(PRIMES[f % len(PRIMES)], dtype=torch.int64, device=ids.device)
            for n in self.sizes:
                windows = nn.functional.pad(ids.long(), (n - 1, 0)).unfold(1, n, 1)  # (B, T, n)
                powers = prime ** torch.arange(n, device=ids.device)
                rows = (windows * powers).sum(-1) % self.vocab + table * self.vocab
                embeds = embeds + nn.functional.embedding(rows, self.weight)
                table += 1
        return embeds


def entropy_patch_lengths(entropy: torch.Tensor, threshold: float) -> torch.Tensor:
    """(B, T) next-byte entropies -> (B, P) patch lengths, as transformers' BltPatcher computes them: bytes 0 and 1
    start patches, and so does byte t >= 2 where entropy[t - 1] > threshold; the last patch ends at byte T - 1. Rows
    with fewer patches are padded with the lengths transformers gives them (a 0, or -1 after a patch at the end)."""
    B, T = entropy.shape
    cut = entropy[:, 1:] > threshold  # (B, T - 1): byte t + 2 starts a patch
    idx = torch.arange(T - 1, device=entropy.device).expand(B, -1)
    # each row's starts first, then sentinels T - 1, as many as that row lacks
    starts = torch.cat([idx, torch.full_like(idx, T - 1)], 1)[torch.cat([cut, ~cut], 1)].reshape(B, T - 1)
    starts = starts[:, :int(cut.sum(1).max())] + 2
    starts = torch.cat([torch.tensor([0, 1], device=entropy.device).expand(B, 2), starts], 1)  # (B, P)
    ends = torch.cat([starts[:, 1:] - 1, torch.full_like(starts[:, :1], T - 1)], 1)
    return ends - starts + 1


def patch_ids(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B, P) patch lengths -> (B, T) the patch each byte falls in (the last patch whose start is <= the byte)."""
    starts = torch.cat([torch.zeros_like(lengths[:, :1]), lengths.cumsum(-1)[:, :-1]], -1)
    return (starts[:, None, :] <= torch.arange(T, device=lengths.device)[None, :, None]).sum(-1) - 1


def patch_pool(h: torch.Tensor, ids: torch.Tensor, P: int) -> torch.Tensor:
    """(B, T, C) byte states -> (B, P, C): each patch the elementwise max of its bytes' states (BLT §3.2.2), zero
    for a patch of no byte."""
    out = h.new_zeros(h.shape[0], P, h.shape[-1])
    return out.scatter_reduce(1, ids[..., None].expand_as(h), h, "amax", include_self=False)


class PatchCrossAttention(nn.Module):
    """BLT's cross-attention between patches and bytes (§3.2.2 encoder: patch queries over their own bytes; §3.3
    decoder: byte queries over their patch): q = W_q RMSNorm(x), k, v = W_k, W_v RMSNorm(memory), each query sees
    the keys `allowed` gives it. It returns the new stream 2x + W_o attention: transformers' BltCrossAttention returns
    x + W_o attention and its callers add x once more. A query allowed no key (a patch of no byte) is not refused: as
    in transformers, its scores all sit at the dtype's minimum, so it averages every value."""

    def __init__(self, cfg):
        super().__init__()
        C, self.heads = cfg.d_model, cfg.n_heads
        self.q_norm, self.k_norm = make_norm(cfg), make_norm(cfg)
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (Linear(C, C, bias=False) for _ in range(4))

    def macs(self, queries: float, inputs: float) -> float:
        """Multiply-adds of a forward of `queries` rows over `inputs` rows (analysis/accounting.py): q_proj, o_proj
        and q_norm once a query, k_proj, v_proj and k_norm once an input, q.k and pattern.v (2C) once a pair, every
        pair: the mask bars keys, it does not skip them."""
        memory = sum(p.numel() for m in (self.k_norm, self.k_proj, self.v_proj) for p in m.parameters())
        query = sum(p.numel() for p in self.parameters()) - memory
        return query * queries + memory * inputs + queries * inputs * 2 * self.q_proj.weight.shape[0]

    def forward(self, x: torch.Tensor, memory: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """x (B, Tq, C), memory (B, Tk, C), allowed (B, Tq, Tk) bool -> (B, Tq, C)."""
        B, T, C = x.shape
        q = self.q_proj(self.q_norm(x)).view(B, T, self.heads, -1).transpose(1, 2)  # (B, H, Tq, D)
        m = self.k_norm(memory)
        k, v = (p(m).view(B, m.shape[1], self.heads, -1).transpose(1, 2) for p in (self.k_proj, self.v_proj))
        barred = torch.zeros(allowed.shape, dtype=q.dtype, device=q.device)
        barred = barred.masked_fill(~allowed, torch.finfo(q.dtype).min)
        a = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=barred[:, None])
        return 2 * x + self.o_proj(a.transpose(1, 2).reshape(B, T, C))


def patch_masks(ids: torch.Tensor, decoder_ids: torch.Tensor, P: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The cross-attention masks: (B, P*k, T) each of a patch's k queries over the bytes in it (encoder), and (B, T,
    P*k) each byte over the k keys of the patch decoder_ids gives it (decoder: patch ids of the lengths less the
    first, so a byte reads the global state of the patch before its own, as transformers' BltModel does)."""
    patches = torch.arange(P, device=ids.device)
    enc = (patches[None, :, None] == ids[:, None, :]).repeat_interleave(k, 1)
    dec = (decoder_ids[:, :, None] == patches[None, None, :]).repeat_interleave(k, -1)
    return enc, dec
