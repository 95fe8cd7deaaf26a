"""MRA attention (Zeng et al. 2022, "Multi Resolution Analysis (MRA) for Approximate Self-Attention", §4-5, MRA-2):
softmax attention approximated at two resolutions over blocks of b = attention_block tokens. The coarse scale scores
block pairs by their means, L = Q_b K_b^T s (Q_b, K_b, V_b: each block's mean over its real tokens); the mra_blocks
pairs of the highest L, after priors (+5e3 on the first mra_first_blocks block rows and columns and on a
band of mra_diagonal_blocks around the diagonal), are computed at full resolution, exp(q_i k_j s - m_i); in 'full'
mode every other pair adds exp(L - max_j L) times its key block's count of real tokens, on V_b of the key block, and
the two scales are rescaled to one maximum; each query divides by its sum of weights (+1e-6). 'sparse' keeps the
full resolution alone. This is transformers' mra2_attention (models/mra/modeling_mra.py) and its CUDA kernels
(kernels-community/mra: mm_to_sparse, sparse_dense_mm, index_max, whose per-query maximum m_i is kept as an integer
of thousandths, -1e5 where no pair is chosen), gathered blocks in PyTorch: transformers has no CPU path (its
attention returns zeros without the kernels). Padded keys and fully padded blocks weigh nothing, padded queries give
zeros (max_j L runs over padded key blocks too, at 0, so more padding can change the choice, as in the reference);
a length that is no multiple of b is padded inside (as padding tokens would be); a sequence of fewer than
mra_blocks pairs computes them all. The reference applies no attention dropout. Bidirectional only: no causal form."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import LlmarchError
from .kind import ATTENTION_KINDS, AttentionKind

MODES = ("full", "sparse")
PRIOR = 5e3  # what the reference adds to a prior block pair's coarse score
MASKED = 1e4  # what it subtracts from a barred score
NO_MAX = -1e5  # index_max's start, -1e8 thousandths: a query block with no full-resolution pair


@ATTENTION_KINDS.register("mra")
class Mra(AttentionKind):
    bidirectional_only = True

    def __init__(self, cfg, layer: int):
        super().__init__(cfg, layer)
        if cfg.causal:
            raise LlmarchError("attention='mra' is bidirectional (an encoder's): its block means average later tokens")
        self.block, self.budget, self.mode = cfg.attention_block, cfg.mra_blocks, cfg.mra_approx
        self.first, self.diagonal = cfg.mra_first_blocks, cfg.mra_diagonal_blocks

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        if cfg.mra_approx not in MODES:
            raise LlmarchError(f"attention='mra': mra_approx must be one of {', '.join(MODES)}, got {cfg.mra_approx!r}")
        if cfg.mra_blocks <= 0 or cfg.mra_first_blocks < 0 or cfg.mra_diagonal_blocks < 0:
            raise LlmarchError(f"attention='mra' needs mra_blocks > 0 (got {cfg.mra_blocks}) and mra_first_blocks, "
                               f"mra_diagonal_blocks >= 0 (got {cfg.mra_first_blocks}, {cfg.mra_diagonal_blocks})")
        if cfg.n_kv_heads != cfg.n_heads:
            raise LlmarchError("attention='mra' needs n_kv_heads = n_heads")

    def new_state(self, attn, batch: int, max_len: int, dtype: torch.dtype, device):
        raise LlmarchError("attention='mra' runs over whole sequences (an encoder's), not a cache")

    def attend(self, attn, x, q, k, v, ctx, dropout_p):  # q, k, v (B, H, T, D)
        B, H, T, D = q.shape
        real = torch.ones(B, T, dtype=torch.bool, device=q.device) if ctx.pad_mask is None else ctx.pad_mask[:, :T]
        scale = D ** -0.5 if attn.scale is None else attn.scale
        y = mra2(q.float(), k.float(), v.float(), real, scale, self.block, self.budget, self.mode == "full",
                 self.first, self.diagonal)
        return y.to(q.dtype)


def mra2(q, k, v, real, scale: float, block: int, budget: int, full: bool, first: int, diagonal: int):
    """MRA-2 over q, k, v (B, H, T, D) with real (B, T) bool; (B, H, T, D)."""
    B, H, T, D = q.shape
    pad = -T % block
    n = (T + pad) // block
    m = F.pad(real.to(q.dtype), (0, pad))[:, None, :].expand(B, H, T + pad).reshape(B, H, n, block)
    q, k, v = (F.pad(t, (0, 0, 0, pad)).reshape(B, H, n, block, D) * m[..., None] for t in (q, k, v))
    count = m.sum(-1)  # (B, H, n) real tokens per block
    q_bar, k_bar, v_bar = (t.sum(-2) / (count[..., None] + 1e-6) for t in (q, k, v))  # (B, H, n, D)
    low = q_bar @ k_bar.transpose(-1, -2) * scale  # (B, H, n, n)
    row_max = low.amax(-1, keepdim=True)  # (B, H, n, 1), taken before the padded pairs are barred
    low = low - MASKED * (count[..., :, None] * count[..., None, :] < 0.5)
    with torch.no_grad():
        pairs, covered = _select(low - row_max, min(budget, n * n), full, first, diagonal)
    qi, ki = pairs // n, pairs % n  # (B, H, K) query block, key block of each chosen pair
    K = pairs.shape[-1]

    def gather(t, i):  # the blocks i (B, H, K) of t (B, H, n, ...)
        return t.gather(2, i.view(B, H, K, *[1] * (t.dim() - 3)).expand(B, H, K, *t.shape[3:]))

    scores = gather(q, qi) @ gather(k, ki).transpose(-1, -2) * scale  # (B, H, K, b, b)
    with torch.no_grad():  # per-query maximum over the chosen pairs of its block, as index_max keeps it
        top = torch.trunc(scores.amax(-1) * 1000) / 1000  # (B, H, K, b)
        best = torch.full((B, H, n, block), NO_MAX, dtype=q.dtype, device=q.device)
        best = best.scatter_reduce(2, qi[..., None].expand(B, H, K, block), top, "amax")  # (B, H, n, b)
    w = torch.exp(scores - gather(best, qi)[..., None] - MASKED * (1 - gather(m, ki)[..., None, :]))
    out = torch.zeros_like(q).scatter_add(2, qi[..., None, None].expand(B, H, K, block, D), w @ gather(v, ki))
    norm = torch.zeros_like(m).scatter_add(2, qi[..., None].expand(B, H, K, block), w.sum(-1))  # (B, H, n, b)
    if full:
        low_w = torch.exp(low - row_max - MASKED * covered) * count[..., None, :]  # (B, H, n, n)
        low_out, low_norm = (low_w @ v_bar)[..., None, :], low_w.sum(-1)[..., None]  # (B, H, n, 1, D), (B, H, n, 1)
        shift = (row_max - best) * m  # log of the coarse scale's weights over the fine one's
        low_c, high_c = torch.exp(shift.clamp(max=0)), torch.exp(-shift.clamp(min=0))
        total = norm * high_c + low_norm * low_c + 1e-6  # (B, H, n, b)
        y = (out * high_c[..., None] + low_out * low_c[..., None]) / total[..., None]
    else:
        y = out / (norm + 1e-6)[..., None]
    return (y * m[..., None]).reshape(B, H, n * block, D)[:, :, :T]


def _select(scores, budget: int, full: bool, first: int, diagonal: int):
    """The `budget` block pairs of the highest coarse score after the priors (flat indices q_block * n + k_block,
    (B, H, budget)), and in full mode which pairs the fine scale covers (every pair scoring at least the lowest
    chosen one, ties included, as the reference's threshold), else 0."""
    n = scores.shape[-1]
    if diagonal:
        i = torch.arange(n, device=scores.device)
        scores = scores + PRIOR * ((i[:, None] - i[None, :]).abs() <= diagonal // 2)
    if first:
        scores = scores.clone()
        scores[..., :first, :] += PRIOR
        scores[..., :, :first] += PRIOR
    top = scores.flatten(-2).topk(budget, dim=-1, sorted=False)
    covered = (scores >= top.values.amin(-1)[..., None, None]).to(scores.dtype) if full else 0
    return top.indices, covered
