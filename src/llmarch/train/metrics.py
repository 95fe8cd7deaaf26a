"""Training metrics: a CSV row per step, a loss-curve PNG, and a progress line (rank 0 only)."""
from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from pathlib import Path

from ..rundir import write_text_atomic

FIELDS = ["step", "train_loss", "lr", "tokens_per_s"]  # the loop's own; a task adds its parts and metrics


def complete_lines(path: Path) -> list[str]:
    """The file's lines that were written whole: a line cut short by a kill (no newline yet) is left out."""
    text = path.read_text(errors="replace") if path.is_file() else ""
    return text.splitlines()[: text.count("\n")]


class MetricsLog:
    """metrics.csv, one row per step. The loop writes a step's row before that step's checkpoint, so every step
    up to the latest checkpoint is logged; a resumed run keeps those rows (the file is rewritten atomically, so a
    kill never leaves it empty) and logs the steps after it again."""

    def __init__(self, path: Path, resume_step: int = 0, fields: list[str] = FIELDS):
        self.path, self.fields = path, fields
        rows = []
        if resume_step:  # keep history up to the resumed step, drop what follows it
            for r in csv.DictReader(complete_lines(path)):
                if r.get("step", "").isdigit() and int(r["step"]) <= resume_step:
                    rows.append(r)
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(path, text.getvalue())

    def write(self, **row) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields).writerow({k: row.get(k, "") for k in self.fields})

    def rows(self) -> list[dict]:
        with self.path.open() as f:
            return list(csv.DictReader(f))

    def plot(self, png: Path, baseline: float | None = None) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.rows()
        fig, ax = plt.subplots(figsize=(7, 4))
        train = [(int(r["step"]), float(r["train_loss"])) for r in rows if r["train_loss"]]
        val = [(int(r["step"]), float(r["val_loss"])) for r in rows if r["val_loss"]]
        if train:
            ax.plot(*zip(*train), label="train loss", alpha=0.7)
        if val:
            ax.plot(*zip(*val), "o-", label="validation loss")
        if baseline is not None:
            ax.axhline(baseline, color="gray", linestyle="--", label=f"unigram entropy ({baseline:.2f})")
        ax.set_xlabel("step")
        ax.set_ylabel("cross-entropy (nats/token)")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(png, dpi=100)
        plt.close(fig)


class ExpertLoadLog:
    """expert_load.jsonl: per training step, each MoE layer's share of the kept assignments per expert and
    its dropped share (metrics.csv carries the per-layer summary)."""

    def __init__(self, path: Path, resume_step: int = 0):
        self.path = path
        lines = [ln for ln in complete_lines(path) if resume_step and json.loads(ln)["step"] <= resume_step]
        write_text_atomic(path, "".join(ln + "\n" for ln in lines))  # as metrics.csv: never left empty by a kill

    def write(self, step: int, model) -> None:
        from ..models.routing import expert_loads

        with self.path.open("a") as f:
            f.write(json.dumps({"step": step, **expert_loads(model)}) + "\n")


class Progress:
    """`step 120/300 loss 3.412 5.1k tok/s ETA 1m02s`: redrawn in place on a terminal, else every `every` steps."""

    def __init__(self, total: int, start: int, every: int, enabled: bool = True):
        self.total, self.start, self.every, self.enabled = total, start, every, enabled
        self.t0 = time.perf_counter()
        self.tty = sys.stderr.isatty()

    def update(self, step: int, loss: float, tokens_per_s: float) -> None:
        if not self.enabled:
            return
        done = step + 1 - self.start
        eta = (time.perf_counter() - self.t0) / max(done, 1) * (self.total - step - 1)
        line = (f"step {step + 1}/{self.total} loss {loss:.4f} {tokens_per_s / 1e3:.1f}k tok/s "
                f"ETA {int(eta // 60)}m{int(eta % 60):02d}s")
        if self.tty:
            print("\r" + line, end="", file=sys.stderr, flush=True)
        elif (step + 1) % self.every == 0 or step + 1 == self.total:
            print(line, file=sys.stderr, flush=True)

    def message(self, text: str) -> None:
        if self.enabled:
            print(("\n" if self.tty else "") + text, file=sys.stderr, flush=True)


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))
