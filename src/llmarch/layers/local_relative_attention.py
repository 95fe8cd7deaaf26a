"""Local self-attention with relative positions, as the USM / Conformer audio encoders of Gemma 3n and Gemma 4 compute
it (Gulati et al. 2020, "Conformer", §2.1: multi-head self-attention with Transformer-XL's relative positional
encoding, Dai et al. 2019, §3.3; transformers' Gemma4AudioAttention). A frame t attends to the frames s with
    min(0, 1 - right) <= t - s <= left - 2                   (context_left = left, context_right = right)
among the clip's real frames, with the score
    a(t, s) = cap * tanh((q_t . k_s + q_t . R[t - s]) / cap)
    q = W_q x * D^-1/2 / ln 2 * softplus(per_dim_scale),   k = W_k x * ln(1 + e) / ln 2
where R[d] = W_r sin/cos(d') for d' = d + H - (left - 1) in 0..H (H = (chunk + left - 1 + right) // 2, a sinusoid of
the width's frequencies, 10^4 the longest period), zero for d' < 0. transformers computes the scores chunk by chunk
(chunk queries against their chunk + left - 1 + right context); every frame a query may attend to lies in its chunk's
context, so the whole (T, T) score matrix here, masked to that band, gives the same weights. A barred key scores
`masked_logit` (not -inf: a padded frame whose every key is barred stays finite). Shapes: x (N, T, C), H heads of
D = C / H."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .clipped_linear import ClippedLinear
from .linear import Linear


def relative_sinusoids(distances: int, width: int, device=None) -> torch.Tensor:
    """(distances + 1, width): [sin(d w_i), cos(d w_i)] for d = distances .. 0 (descending, transformers' order),
    w_i = 10^(-4 i / (width / 2 - 1)). Made at each call (a few kB), so no buffer needs rebuilding after loading."""
    n = width // 2
    inv = torch.exp(torch.arange(n, device=device) * -(math.log(1e4) / max(n - 1, 1)))
    d = torch.arange(distances, -1, -1, device=device)[:, None] * inv[None]
    return torch.cat([torch.sin(d), torch.cos(d)], dim=-1)


class LocalRelativeAttention(nn.Module):
    def __init__(self, width: int, n_heads: int, chunk: int, left: int, right: int, cap: float, masked_logit: float,
                 clipped: bool):
        super().__init__()
        self.n_heads, self.head_dim = n_heads, width // n_heads
        self.left, self.right, self.cap, self.masked_logit = left, right, cap, masked_logit
        self.span = (chunk + left - 1 + right) // 2  # H: the relative distances the table holds, 0..H
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (ClippedLinear(width, width, clipped) for _ in range(4))
        self.rel_proj = Linear(width, width, bias=False)  # W_r: the sinusoid of a distance into key space
        self.per_dim_scale = nn.Parameter(torch.zeros(self.head_dim))

    def forward(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """x (N, T, C), keys (N, T) True for the clip's real frames -> (N, T, C)."""
        N, T, _ = x.shape
        H, D = self.n_heads, self.head_dim
        q = self.q_proj(x).float().view(N, T, H, D).transpose(1, 2)  # (N, H, T, D)
        k = self.k_proj(x).float().view(N, T, H, D).transpose(1, 2)
        v = self.v_proj(x).float().view(N, T, H, D).transpose(1, 2)
        q = q * (D ** -0.5 / math.log(2)) * F.softplus(self.per_dim_scale)
        k = k * (math.log(1 + math.e) / math.log(2))
        table = relative_sinusoids(self.span, x.shape[-1], x.device).to(x.dtype)  # (span + 1, C)
        r = self.rel_proj(table).float().view(-1, H, D)  # (span + 1, H, D)
        pos = torch.arange(T, device=x.device)
        dist = pos[:, None] - pos[None, :]  # (T, T): t - s
        row = (self.left - 1) - dist  # the table's row of each distance (rows run from distance H down to 0)
        near = (row >= 0) & (row <= self.span)
        bias = torch.einsum("nhtd,phd->nhtp", q, r).gather(
            -1, row.clamp(0, self.span).expand(N, H, T, T)) * near  # q_t . R[t - s], zero past the table
        scores = q @ k.transpose(-1, -2) + bias  # (N, H, T, T)
        scores = torch.tanh(scores / self.cap) * self.cap
        allowed = (dist <= self.left - 2) & (dist >= min(0, 1 - self.right))  # (T, T)
        allowed = allowed[None, None] & keys[:, None, None, :]
        weights = torch.softmax(scores.masked_fill(~allowed, self.masked_logit), dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(N, T, H * D)
        return self.o_proj(out.to(x.dtype))
