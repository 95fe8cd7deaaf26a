"""Mean held-out loss (nats per predicted token) and perplexity of a model under an objective."""
from __future__ import annotations

import math

import numpy as np
import torch

from ..data.dataset import TokenData
from .objectives import IGNORE, Objective, causal_lm, lm_loss, model_kwargs


@torch.no_grad()
def evaluate(model, data: TokenData, batch_size: int, max_tokens: int | None = None,
             objective: Objective = causal_lm, seed: int = 0) -> dict[str, float]:
    """Windows of the validation split in order; a masking objective draws its masks from (seed, batch
    index), so the figure is the same at every evaluation of a run."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    try:
        for i, (x, y) in enumerate(data.sequential("val", batch_size, model.config.context_length, max_tokens)):
            inputs, y = objective(x, y, np.random.default_rng([seed, i]))
            y = y.to(device)
            n = int((y != IGNORE).sum())
            total += lm_loss(model(**model_kwargs(inputs, device)).logits, y).item() * n
            count += n
    finally:
        model.train(was_training)
    loss = total / count
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": count}


def unigram_entropy(tokens: np.ndarray) -> float:
    """Entropy (nats) of the token frequency distribution: the loss of the best model that ignores context."""
    counts = np.bincount(np.asarray(tokens, dtype=np.int64))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())
