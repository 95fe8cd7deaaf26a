"""Half-Quadratic Quantization (Badri & Shaji 2023, "HQQ: Half-Quadratic Quantization of Large Machine Learning
Models"): int4 in groups like round-to-nearest, with each group's zero point fitted to the weights instead of
taken from their minimum. No calibration data: it minimises ||W - s (q - z)||_p^p with p < 1 (a sparsity-
promoting norm, so a few outlying weights may keep large errors while the bulk fit tightly), by half-quadratic
splitting, alternating three closed-form steps (the paper's eq. 4-6):
  W_e <- shrink_p(W - s (q - z), beta)           (the error term, a generalised soft threshold)
  q   <- clamp(round(W / s + z), 0, 15)
  z   <- mean over the group of (q - (W - W_e) / s)
with beta growing by kappa each step. Parameters are the reference implementation's (p 0.7, beta 10,
kappa 1.01, 20 steps, stop when the mean absolute error stops falling). We chose it over GPTQ and AWQ because it
needs no calibration data and no activations, so it quantizes any checkpoint as fast as round-to-nearest does."""
from __future__ import annotations

import torch

P_NORM, BETA, KAPPA, STEPS = 0.7, 10.0, 1.01, 20


def shrink(x: torch.Tensor, beta: float) -> torch.Tensor:
    """The proximal operator of |x|^p (p < 1) at step size 1 / beta, as HQQ approximates it."""
    return torch.sign(x) * torch.relu(x.abs() - x.abs().add(1e-8).pow(P_NORM - 1) / beta)


@torch.no_grad()
def int4_hqq(w: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """w (N, K) -> codes uint8 (N, K) in [0, 15], scales and zeros fp32 (N, K / G), as rtn.int4_rtn gives them
    (W ~ (q - 8) s + zero): the scales are round-to-nearest's, the zeros fitted."""
    N, K = w.shape
    g = w.float().reshape(N, K // group_size, group_size)
    lo, hi = g.amin(dim=-1, keepdim=True), g.amax(dim=-1, keepdim=True)
    s = ((hi - lo) / 15).clamp(min=1e-12)
    z = -lo / s  # the zero as a (fractional) code: W ~ s (q - z)
    best, best_z, beta = float("inf"), z, BETA
    for _ in range(STEPS):
        q = (g / s + z).round().clamp(0, 15)
        residual = g - s * (q - z)
        error = residual.abs().mean().item()
        if error >= best:
            break
        best, best_z = error, z
        w_e = shrink(residual, beta)
        z = (q - (g - w_e) / s).mean(dim=-1, keepdim=True)
        beta *= KAPPA
    q = (g / s + best_z).round().clamp(0, 15)
    return q.to(torch.uint8).reshape(N, K), s.squeeze(-1), ((8 - best_z) * s).squeeze(-1)
