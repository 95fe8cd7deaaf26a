"""Nyström attention (Xiong et al. 2021, "Nyströmformer: A Nyström-Based Algorithm for Approximating
Self-Attention", §3, eq. 14): softmax(QK^T/√d) V ≈ F Z B V, with m landmarks Q~, K~ (the means of m equal segments
of the queries and keys: Nystromformer's segment means), F = softmax(Q K~^T), A = softmax(Q~ K~^T) and
B = softmax(Q~ K^T); Z ≈ A^+ by six steps of Razavi et al.'s iteration (eq. 16),
Z <- 1/4 Z (13 I - AZ (15 I - AZ (7 I - AZ))), from Z_0 = A^T / max_j Σ_i A_ij, that maximum taken over the
whole batch and every head, as the reference code does (so rows of a batch are not independent). The sequence
must be exactly nystrom_seq_len long (the segments are its, as the reference reshapes them); with
nystrom_landmarks = nystrom_seq_len the layer is exact softmax attention over any length. value_conv > 0 adds a
depthwise convolution of that (odd) kernel over each head's values along the sequence (§4's skip connection,
`conv`, a kernel per head shared by its dims). Padding is kept out of B's keys and the exact softmax only: it still
enters the landmarks, F, A and the convolution (transformers' Nystromformer). Bidirectional only: no causal form."""
from __future__ import annotations

import torch
from torch import nn

from ...errors import LlmarchError
from .kind import ATTENTION_KINDS, AttentionKind
from .value_conv import check_value_conv, value_conv_modules

PINV_STEPS = 6  # the reference code's iterations of the pseudo-inverse


@ATTENTION_KINDS.register("nystrom")
class Nystrom(AttentionKind):
    bidirectional_only = True
    convolves_values = True

    def __init__(self, cfg, layer: int):
        super().__init__(cfg, layer)
        if cfg.causal:
            raise LlmarchError("attention='nystrom' is bidirectional (an encoder's): its landmarks average later "
                               "tokens")
        self.landmarks, self.seq_len = cfg.nystrom_landmarks, cfg.nystrom_seq_len

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        m, n = cfg.nystrom_landmarks, cfg.nystrom_seq_len
        if m <= 0 or n <= 0 or n % m:
            raise LlmarchError(f"attention='nystrom' needs nystrom_landmarks dividing nystrom_seq_len (got {m} and "
                               f"{n})")
        check_value_conv(cfg, "nystrom")
        if cfg.n_kv_heads != cfg.n_heads or cfg.positions == "rope":
            raise LlmarchError("attention='nystrom' needs n_kv_heads = n_heads and no RoPE")

    def modules(self, cfg, layer: int) -> dict[str, nn.Module]:
        return value_conv_modules(cfg)

    def new_state(self, attn, batch: int, max_len: int, dtype: torch.dtype, device):
        raise LlmarchError("attention='nystrom' runs over whole sequences (an encoder's), not a cache")

    def attend(self, attn, x, q, k, v, ctx, dropout_p):  # q, k, v (B, H, T, D)
        B, H, T, D = q.shape
        q = q * (D ** -0.5 if attn.scale is None else attn.scale)
        keys = None if ctx.pad_mask is None else ctx.pad_mask[:, None, None, :T]  # (B, 1, 1, T)
        if self.landmarks == self.seq_len:  # exact softmax attention
            y = _softmax(q @ k.transpose(-1, -2), keys) @ v
        else:
            if T != self.seq_len:
                raise LlmarchError(f"attention='nystrom' with {self.landmarks} landmarks needs sequences of exactly "
                                   f"nystrom_seq_len={self.seq_len} tokens (pad them), got {T}")
            m = self.landmarks
            q_l = q.reshape(B, H, m, T // m, D).mean(dim=-2)  # (B, H, m, D)
            k_l = k.reshape(B, H, m, T // m, D).mean(dim=-2)
            f = torch.softmax(q @ k_l.transpose(-1, -2), dim=-1)  # (B, H, T, m)
            a = torch.softmax(q_l @ k_l.transpose(-1, -2), dim=-1)  # (B, H, m, m)
            b = _softmax(q_l @ k.transpose(-1, -2), keys)  # (B, H, m, T)
            y = (f @ pseudo_inverse(a)) @ (b @ v)
        conv = attn._modules.get("conv")
        return y if conv is None else y + conv(v)


def _softmax(scores: torch.Tensor, keys: torch.Tensor | None) -> torch.Tensor:
    """softmax over the last dim, padded keys (keys False) at the dtype's lowest value, as transformers adds it."""
    if keys is not None:
        scores = scores.masked_fill(~keys, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1)


def pseudo_inverse(a: torch.Tensor) -> torch.Tensor:
    """Z ≈ A^+ for A (B, H, m, m) by Razavi et al. 2014's iteration (Xiong et al. 2021, eq. 16)."""
    eye = torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
    z = a.transpose(-1, -2) / a.sum(dim=-2).max()  # one scalar over the batch and heads: the reference's Z_0
    for _ in range(PINV_STEPS):
        az = a @ z
        z = (0.25 * z) @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az)))
    return z
