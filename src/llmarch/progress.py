"""A progress bar for the long steps outside the training loop (evaluation, analysis, the first tokenizer
build): `eval [#######.............] 35% 1.2M/3.4M tok 5.1k tok/s ETA 0m07s` on stderr, redrawn in place on a
terminal; elsewhere (a log file) a plain line every `every` seconds, and none for steps shorter than that.
Only the first process of a multi-process job draws one."""
from __future__ import annotations

import os
import sys
import time

WIDTH = 20  # characters of the bar


def _si(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.1f}{unit}"
    return f"{x:.0f}" if x == int(x) else f"{x:.1f}"


class Bar:
    def __init__(self, total: float, label: str, unit: str = "", every: float = 10.0, enabled: bool = True):
        self.total, self.label, self.unit, self.every = max(total, 0), label, unit, every
        self.enabled = enabled and os.environ.get("RANK", "0") == "0"
        self.tty = sys.stderr.isatty()
        self.done = 0.0
        self.t0 = self.shown = time.perf_counter()

    def __enter__(self) -> "Bar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def advance(self, n: float = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if self.enabled and now - self.shown >= (0.1 if self.tty else self.every):
            self._draw(now)

    def close(self) -> None:
        """The last line, where anything was shown (a step shorter than a redraw shows nothing)."""
        if self.enabled and self.shown > self.t0:
            self._draw(time.perf_counter())
            if self.tty:
                print(file=sys.stderr, flush=True)
        self.enabled = False

    def line(self, now: float) -> str:
        elapsed = max(now - self.t0, 1e-9)
        rate = self.done / elapsed
        share = min(self.done / self.total, 1.0) if self.total else 1.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        filled = int(share * WIDTH)
        unit = f" {self.unit}" if self.unit else ""
        return (f"{self.label} [{'#' * filled}{'.' * (WIDTH - filled)}] {share:4.0%} {_si(self.done)}/"
                f"{_si(self.total)}{unit} {_si(rate)}{unit}/s ETA {int(eta // 60)}m{int(eta % 60):02d}s")

    def _draw(self, now: float) -> None:
        self.shown = now
        if self.tty:
            print("\r" + self.line(now), end="", file=sys.stderr, flush=True)
        else:
            print(self.line(now), file=sys.stderr, flush=True)
