"""Scaling-law figures (PNG): loss against compute with the fitted compute-optimal frontier, and iso-FLOP
curves (Hoffmann et al. 2022, figures 2 and 3). Compute is C = 6 N D throughout, as in the fit."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..analysis.plots import _pyplot
from .fit import ChinchillaFit, compute_optimal


def _has_frontier(fit: ChinchillaFit) -> bool:
    return fit.alpha > 0 and fit.beta > 0


def frontier(fit: ChinchillaFit, flops: np.ndarray) -> np.ndarray:
    """The fitted loss of the compute-optimal model at each budget."""
    best = [compute_optimal(fit, c) for c in flops]
    return np.array([fit.loss(b["params"], b["tokens"]) for b in best])


def loss_vs_compute(points: dict[str, np.ndarray], fit: ChinchillaFit, png: Path) -> None:
    """Each run's final loss at its compute, a line per model size (more tokens: more compute), and the
    fitted frontier min over N of L(N, C / 6N)."""
    plt = _pyplot()
    N, D, L = points["params"], points["tokens"], points["loss"]
    C = 6 * N * D
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    sizes = np.unique(N)
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(sizes)))
    for n, color in zip(sizes, colors):
        sel = np.argsort(D[N == n])
        ax.plot(C[N == n][sel], L[N == n][sel], "o-", color=color, ms=4, label=f"N = {n:.3g}")
    if _has_frontier(fit):
        grid = np.geomspace(C.min() / 2, C.max() * 2, 100)
        ax.plot(grid, frontier(fit, grid), "k--", label="fitted frontier")
    ax.set_xscale("log")
    ax.set_xlabel("training compute C = 6ND (FLOPs)")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title(f"L = {fit.E:.3g} + {fit.A:.3g}/N^{fit.alpha:.3f} + {fit.B:.3g}/D^{fit.beta:.3f}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def isoflop(points: dict[str, np.ndarray], fit: ChinchillaFit, png: Path, budgets: int = 4) -> None:
    """For a few budgets across the sweep's compute range: the fitted loss against N with D = C / 6N, its
    minimum marked, and the runs whose compute is nearest that budget."""
    plt = _pyplot()
    N, D, L = points["params"], points["tokens"], points["loss"]
    C = 6 * N * D
    levels = np.geomspace(C.min(), C.max(), budgets) if C.max() > C.min() else np.array([C.min()])
    nearest = np.abs(np.log(C)[:, None] - np.log(levels)[None, :]).argmin(1)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    colors = plt.cm.plasma(np.linspace(0, 0.85, len(levels)))
    lo, hi = N.min() / 4, N.max() * 4
    if _has_frontier(fit):  # widen the axis to the optima, which may lie outside the sizes swept
        optima = [compute_optimal(fit, c)["params"] for c in levels]
        lo, hi = min(lo, min(optima) / 4), max(hi, max(optima) * 4)
    span = np.geomspace(lo, hi, 200)
    for j, (c, color) in enumerate(zip(levels, colors)):
        ax.plot(span, fit.loss(span, c / (6 * span)), "-", color=color, label=f"C = {c:.2g}")
        if _has_frontier(fit):
            best = compute_optimal(fit, c)
            ax.plot(best["params"], fit.loss(best["params"], best["tokens"]), "*", color=color, ms=12)
        ax.plot(N[nearest == j], L[nearest == j], "o", color=color, ms=5, mfc="none")
    ax.axvspan(N.min(), N.max(), color="0.92", zorder=0, label="sizes swept")
    ax.set_xscale("log")
    ax.set_ylim(L.min() * 0.85, L.max() * 1.25)
    ax.set_xlabel("parameters N")
    ax.set_ylabel("loss")
    ax.set_title("iso-FLOP curves of the fitted law (stars: optimal N; circles: runs nearest each C)",
                 fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
