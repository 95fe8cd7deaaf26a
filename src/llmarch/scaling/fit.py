"""Scaling-law fits.

- Chinchilla's parametric law (Hoffmann et al. 2022, eq. 2 and approach 3, appendix D.2):
      L(N, D) = E + A / N^alpha + B / D^beta,
  fitted by minimising sum_i Huber_delta(LSE(a - alpha log N_i, b - beta log D_i, e) - log L_i) with
  delta = 1e-3 (A = e^a, B = e^b, E = e^e), by L-BFGS from every point of a grid of starting values, keeping
  the best. The Huber loss on log-loss makes the fit robust to outlying runs.
- Compute-optimal allocation for C = 6 N D FLOPs (their eq. 4): N_opt = G (C/6)^(beta/(alpha+beta)),
  D_opt = G^-1 (C/6)^(alpha/(alpha+beta)), G = (alpha A / (beta B))^(1/(alpha+beta)).
- Kaplan et al. 2020 (eqs. 1.1-1.2): a single-variable power law L(X) = (X_c / X)^alpha_X, fitted by least
  squares on log L = alpha log X_c - alpha log X, with bootstrap confidence intervals (resampled points)."""
from __future__ import annotations

import csv
import itertools
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import LlmarchError

HUBER_DELTA = 1e-3
# the starting grid of approach 3 (appendix D.2: alpha, beta in 0..2 by 0.5, e in -1..1 by 0.5, a, b in 0..25
# by 5), thinned to 675 starts so a fit takes seconds, not minutes (tests/test_scaling.py checks that it
# recovers a known law)
GRID = dict(alpha=(0.0, 0.5, 1.0, 1.5, 2.0), beta=(0.0, 0.5, 1.0, 1.5, 2.0), e=(-1.0, 0.0, 1.0),
            a=(0.0, 10.0, 20.0), b=(0.0, 10.0, 20.0))


@dataclass
class ChinchillaFit:
    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def loss(self, N, D):
        return self.E + self.A / np.asarray(N, float) ** self.alpha + self.B / np.asarray(D, float) ** self.beta

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PowerLawFit:
    variable: str  # "params" or "tokens"
    alpha: float
    x_c: float
    alpha_ci: tuple[float, float]  # bootstrap percentile interval
    x_c_ci: tuple[float, float]

    def loss(self, x):
        return (self.x_c / np.asarray(x, float)) ** self.alpha


def read_points(path: str | Path, params_column: str = "params") -> dict[str, np.ndarray]:
    """The columns of a sweep CSV (at least params, tokens, loss) as float arrays; N is read from
    params_column (a sweep's `params` is non-embedding, as Kaplan's; `total_params` is Chinchilla's N)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise LlmarchError(f"cannot read {path}: {e.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise LlmarchError(f"cannot read {path} as CSV: {e}") from None
    if not rows:
        raise LlmarchError(f"{path} has no rows")
    missing = {params_column, "tokens", "loss"} - set(rows[0])
    if missing:
        raise LlmarchError(f"{path} lacks column(s) {', '.join(sorted(missing))} (needs {params_column},tokens,loss)")
    try:
        out = {k: np.array([float(r[col]) for r in rows])
               for k, col in (("params", params_column), ("tokens", "tokens"), ("loss", "loss"))}
    except (ValueError, TypeError) as e:  # TypeError: a short row's missing cell
        raise LlmarchError(f"{path}: not a number: {e}") from None
    if not all(np.isfinite(v).all() for v in out.values()):
        raise LlmarchError(f"{path}: {params_column}, tokens and loss must be finite numbers")
    if (out["params"] <= 0).any() or (out["tokens"] <= 0).any() or (out["loss"] <= 0).any():
        raise LlmarchError(f"{path}: {params_column}, tokens and loss must be positive")
    return out


def _objective(theta: np.ndarray, logN: np.ndarray, logD: np.ndarray, logL: np.ndarray):
    """Huber loss of the log-prediction and its gradient in (a, b, e, alpha, beta)."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * logN, b - beta * logD, np.full_like(logN, e)])
    top = terms.max(0)
    w = np.exp(terms - top)
    lse = top + np.log(w.sum(0))
    soft = w / w.sum(0)  # d lse / d term
    r = lse - logL
    small = np.abs(r) <= HUBER_DELTA
    loss = np.where(small, 0.5 * r ** 2, HUBER_DELTA * (np.abs(r) - 0.5 * HUBER_DELTA)).sum()
    dr = np.where(small, r, HUBER_DELTA * np.sign(r))
    grad = np.array([(dr * soft[0]).sum(), (dr * soft[1]).sum(), (dr * soft[2]).sum(),
                     -(dr * soft[0] * logN).sum(), -(dr * soft[1] * logD).sum()])
    return loss, grad


def fit_chinchilla(params, tokens, loss, grid: dict | None = None) -> ChinchillaFit:
    from scipy.optimize import minimize

    logN, logD, logL = (np.log(np.asarray(v, float)) for v in (params, tokens, loss))
    if len(logL) < 5:
        raise LlmarchError(f"a five-parameter law needs at least 5 points, got {len(logL)}")
    grid = grid or GRID
    best = None
    for alpha, beta, e, a, b in itertools.product(grid["alpha"], grid["beta"], grid["e"], grid["a"], grid["b"]):
        res = minimize(_objective, np.array([a, b, e, alpha, beta]), args=(logN, logD, logL), jac=True,
                       method="L-BFGS-B")
        if best is None or res.fun < best.fun:
            best = res
    a, b, e, alpha, beta = best.x
    return ChinchillaFit(E=math.exp(e), A=math.exp(a), B=math.exp(b), alpha=float(alpha), beta=float(beta))


def compute_optimal(fit: ChinchillaFit, flops: float) -> dict[str, float]:
    """The parameters and tokens that minimise fit.loss under C = 6 N D."""
    if flops <= 0:
        raise LlmarchError(f"--flops must be positive, got {flops}")
    if fit.alpha <= 0 or fit.beta <= 0:
        raise LlmarchError(f"the fit has alpha={fit.alpha:.3g}, beta={fit.beta:.3g}: no compute-optimal "
                           "trade-off without both exponents positive")
    s = fit.alpha + fit.beta
    G = (fit.alpha * fit.A / (fit.beta * fit.B)) ** (1 / s)
    n = G * (flops / 6) ** (fit.beta / s)
    return {"params": n, "tokens": flops / (6 * n)}


def fit_power_law(x, loss, variable: str, bootstrap: int = 1000, seed: int = 0, level: float = 0.95) -> PowerLawFit:
    """L = (x_c / x)^alpha by least squares in log space, with percentile bootstrap intervals."""
    logx, logL = np.log(np.asarray(x, float)), np.log(np.asarray(loss, float))
    if len(logx) < 2 or np.ptp(logx) == 0:
        raise LlmarchError(f"a power law in {variable} needs at least 2 distinct values of it")

    def fit(lx, ll):
        slope, intercept = np.polyfit(lx, ll, 1)
        alpha = -slope
        return alpha, math.exp(intercept / alpha) if alpha != 0 else float("inf")

    alpha, x_c = fit(logx, logL)
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(bootstrap):
        idx = rng.integers(0, len(logx), len(logx))
        if np.ptp(logx[idx]) > 0:
            samples.append(fit(logx[idx], logL[idx]))
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    a_s, x_s = np.array([s[0] for s in samples]), np.array([s[1] for s in samples])
    return PowerLawFit(variable, float(alpha), float(x_c), (float(np.percentile(a_s, lo)), float(np.percentile(a_s, hi))),
                       (float(np.percentile(x_s, lo)), float(np.percentile(x_s, hi))))
