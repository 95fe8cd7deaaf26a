"""Mean held-out loss (nats per predicted token) and perplexity of a model under an objective."""
from __future__ import annotations

import math

import numpy as np
import torch

from ..data.dataset import TokenData
from .distributed import all_sum, row_slice
from .objectives import IGNORE, Objective, causal_lm, lm_loss, model_kwargs


@torch.no_grad()
def evaluate(model, data: TokenData, batch_size: int, max_tokens: int | None = None,
             objective: Objective = causal_lm, seed: int = 0) -> dict[str, float]:
    """Windows of the validation split in order; a masking objective draws its masks from (seed, batch
    index), so the figure is the same at every evaluation of a run. Under several processes
    (train/distributed.py) each computes its rows of every batch and the sums are added up: the same figure."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    try:
        for i, (x, y) in enumerate(data.sequential("val", batch_size, model.config.context_length, max_tokens)):
            inputs, y = objective(x, y, np.random.default_rng([seed, i]))
            mine = row_slice(len(y))
            # with no rows of its own a process still runs a forward: a sharded model's forward is collective
            rows = mine if mine.stop > mine.start else slice(0, 1)
            y = y[rows].to(device)
            n = int((y != IGNORE).sum()) if rows is mine else 0
            logits = model(**{k: v[rows] for k, v in model_kwargs(inputs, device).items()}).logits
            if n:
                total += lm_loss(logits, y).item() * n
                count += n
    finally:
        model.train(was_training)
    total, count = all_sum([total, count])
    loss = total / count
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": int(count)}


def unigram_entropy(tokens: np.ndarray) -> float:
    """Entropy (nats) of the token frequency distribution: the loss of the best model that ignores context."""
    counts = np.bincount(np.asarray(tokens, dtype=np.int64))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())
