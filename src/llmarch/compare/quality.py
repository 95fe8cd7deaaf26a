"""What an entry learns at the budget: validation loss on the embedded corpus (each family on its own
objective), its curve against compute, and answer accuracy on the synthetic recall and copy tasks at the
synthetic budget. One entry at a time; the caller writes each entry's result atomically."""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..config import ModelConfig
from ..data.synthetic import SyntheticTask
from ..scaling.sweep import read_rows
from .entries import Entry
from .sizing import Shape, base_config, flops_per_token, steps_for, with_depth


@dataclass(frozen=True)
class Synthetic:
    budget: float = 6e11  # training FLOPs of each synthetic run (every family the same)
    batch_size: int = 32
    lr: float = 3e-3
    # small enough to be learned within a CPU minute by the mixers that can: recall of 8 pairs (17 tokens) and
    # copying 4 tokens scattered over 32 (37 tokens); both inside the 64-token window, so they test what a mixer
    # can look up by content (Arora et al. 2024: linear attention's fixed state is what fails at recall), not reach
    recall: SyntheticTask = field(default_factory=lambda: SyntheticTask("recall", pairs=8, keys=16, values=16))
    copy: SyntheticTask = field(default_factory=lambda: SyntheticTask("copy", length=32, data_tokens=4,
                                                                      data_vocab=8))


def train_lm(entry: Entry, cfg: ModelConfig, tc, run: Path, verbose: bool) -> dict:
    """Train (or finish training) the entry on the corpus; its validation curve and final loss."""
    from ..train import train

    resume = (run / "latest").exists()
    t0 = time.perf_counter()
    train(None if resume else cfg, tc, run, resume=resume, verbose=verbose)
    seconds = time.perf_counter() - t0
    per_step = flops_per_token(cfg) * tc.batch_size * cfg.context_length
    curve = [dict(step=int(r["step"]), flops=int(r["step"]) * per_step, val_loss=float(r["val_loss"]))
             for r in read_rows(run / "metrics.csv") if r.get("val_loss")]
    return {"val_loss": curve[-1]["val_loss"], "curve": curve, "train_seconds": seconds}


def synthetic_config(entry: Entry, cfg: ModelConfig, task: SyntheticTask) -> ModelConfig:
    """The sized model on a synthetic task's vocabulary and length: the same width and depth."""
    small = base_config(entry, Shape(d_model=cfg.d_model, vocab_size=task.vocab_size, context=task.seq_len))
    return with_depth(small, cfg.n_layers).replace(name=f"{entry.key}-{task.name}")


def synthetic(entry: Entry, cfg: ModelConfig, syn: Synthetic, device: str | None, seed: int) -> dict:
    """Answer accuracy on each synthetic task after `syn.budget` FLOPs of training."""
    from ..train.synthetic import SyntheticConfig, train_synthetic

    out = {}
    for task in (syn.recall, syn.copy):
        scfg = synthetic_config(entry, cfg, task)
        steps = steps_for(scfg, syn.budget, Shape(batch_size=syn.batch_size, context=task.seq_len))
        sc = SyntheticConfig(steps=steps, batch_size=syn.batch_size, lr=syn.lr, eval_sequences=256, seed=seed,
                             device=device)
        result = train_synthetic(scfg, replace(task), sc)
        out[task.name] = {"accuracy": result["accuracy"], "steps": steps}
    return out
