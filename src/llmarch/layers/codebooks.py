"""Parallel token streams (MusicGen: Copet et al. 2023, "Simple and Controllable Music Generation", §2.2-2.3): K
codebooks of audio codes per time step, given as transformers takes them, ids (B * K, T) whose row b * K + k is
stream k of sequence b. Each stream has its own embedding table, the K embeddings of a step summed into one input
vector, and its own head over the shared hidden state. The K tables are held as one embedding of K * rows rows
(table k at rows k * rows ...) and the K heads as one projection of K * V outputs, so the model keeps one embedding
and one head module (initialisation, quantization and accounting see them as any model's)."""
from __future__ import annotations

import torch
from torch import nn


def embed_streams(embed: nn.Embedding, ids: torch.Tensor, k: int) -> torch.Tensor:
    """ids (B * K, T) -> (B, T, C): sum over k of E_k[ids[b * K + k]]."""
    rows = embed.num_embeddings // k
    offsets = torch.arange(k, device=ids.device)[:, None] * rows  # (K, 1): where table k starts
    return embed(ids.view(-1, k, ids.shape[-1]) + offsets).sum(1)  # (B, K, T, C) -> (B, T, C)


def split_heads(logits: torch.Tensor, k: int) -> torch.Tensor:
    """(B, T, K * V), the K heads side by side -> (B * K, T, V), rows as the ids' (b * K + k)."""
    B, T, _ = logits.shape
    return logits.view(B, T, k, -1).transpose(1, 2).reshape(B * k, T, -1)
