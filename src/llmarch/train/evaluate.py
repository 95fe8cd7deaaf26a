"""Mean next-token cross-entropy (nats/token) and perplexity of a model on held-out tokens."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..data.dataset import TokenData


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Causal-LM objective: -log p(x_{t+1} | x_<=t), averaged over positions; computed in fp32."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


@torch.no_grad()
def evaluate(model, data: TokenData, batch_size: int, max_tokens: int | None = None) -> dict[str, float]:
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    try:
        for x, y in data.sequential("val", batch_size, model.config.context_length, max_tokens):
            x, y = x.to(device), y.to(device)
            total += lm_loss(model(x).logits, y).item() * y.numel()
            count += y.numel()
    finally:
        model.train(was_training)
    loss = total / count
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": count}


def unigram_entropy(tokens: np.ndarray) -> float:
    """Entropy (nats) of the token frequency distribution: the loss of the best model that ignores context."""
    counts = np.bincount(np.asarray(tokens, dtype=np.int64))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())
