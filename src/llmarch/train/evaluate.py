"""Held-out scores, shared by every task: the mean cross-entropy (nats per predicted target) and the share of
predicted targets the model's argmax gets right, over batches of (model inputs, targets); `evaluate`, the
language-modelling loss and perplexity of a model under a pretraining objective."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterable

import numpy as np
import torch

from ..data.dataset import TokenData
from ..errors import LlmarchError
from .distributed import all_sum, row_slice
from .metrics import perplexity
from .objectives import IGNORE, Objective, causal_lm, lm_loss, model_kwargs


@contextmanager
def evaluating(model):
    """The model in eval mode (no dropout) for the duration, then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield next(model.parameters()).device
    finally:
        model.train(was_training)


@torch.no_grad()
def score(model, batches: Iterable[tuple[dict[str, torch.Tensor], torch.Tensor]]) -> dict[str, float]:
    """Loss and argmax accuracy over the targets that are not IGNORE, in eval mode. Under several processes
    (train/distributed.py) each computes its rows of every batch and the sums are added up: the same figures."""
    total = correct = count = 0.0
    with evaluating(model) as device:
        for inputs, y in batches:
            mine = row_slice(len(y))
            # with no rows of its own a process still runs a forward: a sharded model's forward is collective
            rows = mine if mine.stop > mine.start else slice(0, 1)
            y = y[rows].to(device)
            logits = model(**{k: v[rows].to(device) for k, v in inputs.items()}).logits
            real = y != IGNORE
            n = int(real.sum()) if rows is mine else 0
            if n:
                total += lm_loss(logits, y).item() * n
                correct += int((logits.argmax(-1)[real] == y[real]).sum())
                count += n
    total, correct, count = all_sum([total, correct, count])
    if not count:
        raise LlmarchError("nothing to score: the held-out batches have no targets")
    return {"loss": total / count, "accuracy": correct / count, "count": int(count)}


def evaluate(model, data: TokenData, batch_size: int, max_tokens: int | None = None,
             objective: Objective = causal_lm, seed: int = 0, context: int | None = None,
             progress: Callable[[int], None] | None = None) -> dict[str, float]:
    """Windows of `context` tokens (None: the model's context_length) of the validation split in order, the
    causal objective's targets after the last whole window in one more window ending at the last token; a
    masking objective draws each window's masks from (seed, window index), so the figure is the same at every
    evaluation of a run and at any batch size (`llmarch eval` and the training log agree). progress, if given,
    is called with each batch's count of input tokens once it is scored."""
    def batches():
        # the causal tail after the last whole window in one more window; a masking objective's windows whole
        windows = data.sequential("val", batch_size, context or model.config.context_length, max_tokens,
                                  tail=objective is causal_lm)
        start = 0
        for x, y in windows:
            if objective is causal_lm:
                inputs = x
            else:
                rngs = [np.random.default_rng([seed, start + r, 1]) for r in range(len(x))]
                inputs, y = objective.rows(x, y, rngs)
            start += len(x)
            yield model_kwargs(inputs), y
            if progress is not None:
                progress(x.numel())

    result = score(model, batches())
    return {"loss": result["loss"], "perplexity": perplexity(result["loss"]), "tokens": result["count"]}


def unigram_entropy(tokens: np.ndarray) -> float:
    """Entropy (nats) of the token frequency distribution: the loss of the best model that ignores context."""
    counts = np.bincount(np.asarray(tokens, dtype=np.int64))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())
