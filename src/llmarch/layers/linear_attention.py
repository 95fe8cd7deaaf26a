"""Kernelised attention: softmax(q k^T) v replaced by feature maps, phi(q) (phi(k)^T v), which costs O(L) in
time and memory and makes causal attention a recurrence with a constant-size state (Katharopoulos et al.
2020, "Transformers are RNNs", eqs. 4-9):

    out_i = phi(q_i)^T S_i / (phi(q_i)^T z_i),   S_i = sum_{j<=i} phi(k_j) v_j^T,   z_i = sum_{j<=i} phi(k_j)

(bidirectional: the sums run over every j). Feature maps:
- linear: phi(x) = elu(x) + 1 (Katharopoulos et al., eq. 7);
- performer: FAVOR+ positive orthogonal random features (Choromanski et al. 2021, eq. 6 and §2.4),
  phi(x) = exp(W x - |x|^2 / 2) / sqrt(m), x scaled by s^(1/2) for score scale s, with W's m rows
  orthogonal Gaussian directions: E[phi(q) . phi(k)] = exp(s q . k), softmax's kernel. Drawn once per layer
  from a seed, so the model is deterministic.
The causal form is computed in chunks of C positions: within a chunk the C x C masked products, across
chunks the running state, so the state is never materialised per position. Generation carries (S, z)
between calls (LinearState): each new token costs the same, however long the context."""
from __future__ import annotations

import copy

import math

import torch
import torch.nn.functional as F
from torch import nn


class EluFeatures(nn.Module):
    def forward(self, x: torch.Tensor, is_query: bool) -> torch.Tensor:
        return F.elu(x) + 1


class FavorFeatures(nn.Module):
    def __init__(self, head_dim: int, n_features: int, scale: float, seed: int):
        super().__init__()
        # drawn on the CPU from the seed whatever the default device: a model built on meta to be filled from a
        # checkpoint holds no random features otherwise (this buffer is not saved); moved with the model after
        gen = torch.Generator().manual_seed(seed)
        blocks = [torch.linalg.qr(torch.randn(head_dim, head_dim, generator=gen, device="cpu"))[0].T
                  for _ in range(math.ceil(n_features / head_dim))]
        directions = torch.cat(blocks)[:n_features]  # orthogonal rows within each block (§2.4)
        norms = torch.randn(n_features, head_dim, generator=gen, device="cpu").norm(dim=1)  # Gaussian row lengths
        w = directions * norms[:, None]  # (m, D), rebuilt from the seed
        default = torch.get_default_device()
        self.register_buffer("w", w if default.type in ("cpu", "meta") else w.to(default), persistent=False)
        self.scale = scale

    def forward(self, x: torch.Tensor, is_query: bool) -> torch.Tensor:
        x = x.float() * self.scale ** 0.5
        proj = x @ self.w.T  # (..., m)
        log = proj - x.square().sum(-1, keepdim=True) / 2
        if is_query:  # a per-query constant cancels in the ratio; it keeps exp() in range
            log = log - log.amax(dim=-1, keepdim=True).detach()
        return log.exp() / math.sqrt(self.w.shape[0])


class LinearState:
    """The recurrent state of one layer for generation: S (B, H, F, D) and z (B, H, F)."""

    def __init__(self, batch: int, heads: int, features: int, head_dim: int, device):
        self.s = torch.zeros(batch, heads, features, head_dim, device=device)
        self.z = torch.zeros(batch, heads, features, device=device)

    def reorder(self, rows: torch.Tensor) -> None:
        self.s, self.z = self.s.index_select(0, rows), self.z.index_select(0, rows)

    def put_row(self, row: int, src: "LinearState", start: int, length: int) -> None:
        """Row `row` takes src's row 0 (continuous batching); a sum over the past has no slots to move."""
        self.s[row], self.z[row] = src.s[0], src.z[0]

    def shift(self, n: int) -> None:
        """Nothing is indexed by slot."""

    def rows(self, n: int) -> "LinearState":
        """The first n rows, sharing this state's memory."""
        view = copy.copy(self)
        view.s, view.z = self.s[:n], self.z[:n]
        return view

    @property
    def max_len(self) -> None:  # a state has no length limit of its own
        return None

    @property
    def nbytes(self) -> int:
        return self.s.numel() * self.s.element_size() + self.z.numel() * self.z.element_size()


def linear_attention(fq: torch.Tensor, fk: torch.Tensor, v: torch.Tensor, causal: bool,
                     state: LinearState | None = None, chunk: int = 64, eps: float = 1e-6) -> torch.Tensor:
    """fq, fk (B, H, T, F) features of queries and keys (keys at padding already zeroed), v (B, H, T, D) ->
    (B, H, T, D), in fp32. Causal: continues from `state` (and advances it) when given."""
    fq, fk, v = fq.float(), fk.float(), v.float()
    if not causal:
        s, z = torch.einsum("bhtf,bhtd->bhfd", fk, v), fk.sum(dim=2)
        return torch.einsum("bhtf,bhfd->bhtd", fq, s) / (torch.einsum("bhtf,bhf->bht", fq, z)[..., None] + eps)
    B, H, T, Fd = fq.shape
    D = v.shape[-1]
    C = min(chunk, T)
    n = math.ceil(T / C)
    pad = n * C - T
    fq, fk, v = (F.pad(t, (0, 0, 0, pad)).view(B, H, n, C, -1) for t in (fq, fk, v))
    s0 = state.s if state is not None else fq.new_zeros(B, H, Fd, D)
    z0 = state.z if state is not None else fq.new_zeros(B, H, Fd)
    chunk_s = torch.einsum("bhncf,bhncd->bhnfd", fk, v)  # each chunk's sum of phi(k) v^T
    chunk_z = fk.sum(dim=3)  # (B, H, n, F)
    s_before = s0[:, :, None] + chunk_s.cumsum(dim=2) - chunk_s  # the state entering each chunk
    z_before = z0[:, :, None] + chunk_z.cumsum(dim=2) - chunk_z
    inner = torch.einsum("bhncf,bhnkf->bhnck", fq, fk).tril()  # within the chunk: keys at or before each query
    num = torch.einsum("bhnck,bhnkd->bhncd", inner, v) + torch.einsum("bhncf,bhnfd->bhncd", fq, s_before)
    den = inner.sum(dim=-1) + torch.einsum("bhncf,bhnf->bhnc", fq, z_before)
    if state is not None:  # padded positions carry zero features: they add nothing to the state
        # in place: a state over some rows of a larger one (continuous batching) writes through
        state.s.copy_(s0 + chunk_s.sum(dim=2))
        state.z.copy_(z0 + chunk_z.sum(dim=2))
    return (num / (den[..., None] + eps)).reshape(B, H, n * C, D)[:, :, :T]
