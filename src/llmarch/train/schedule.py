"""Learning-rate schedule: linear warmup, then cosine decay to min_lr (Loshchilov & Hutter 2017, eq. 5)."""
from __future__ import annotations

import math

import numpy as np


def lr_at(step: int, max_lr: float, min_lr: float, warmup: int, total: int) -> float:
    if step < warmup:
        return max_lr * (step + 1) / warmup
    if step >= total:
        return min_lr
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))


def set_lr(opt, step: int, lc) -> float:
    """Put this step's learning rate (lc.lr, lc.min_lr, lc.warmup_steps, lc.steps) into every parameter group;
    return it."""
    lr = lr_at(step, lc.lr, lc.min_lr, lc.warmup_steps, lc.steps)
    for group in opt.param_groups:
        group["lr"] = lr
    return lr


def batch_indices(seed: int, step: int, n: int, batch_size: int, micro: int = 0) -> np.ndarray:
    """A micro-batch's examples: batch_size distinct indices below n, drawn from (seed, step, micro) so a rerun
    repeats them (micro 0 from (seed, step), as when there was one batch a step)."""
    rng = np.random.default_rng([seed, step, micro] if micro else [seed, step])
    return rng.choice(n, min(batch_size, n), replace=False)
