"""Gated hyper-connections (Qwen4-Exp's hc_count; after Zhu et al. 2025, "Hyper-Connections", ICLR, §2): the residual
stream is K = hc_streams streams of d_model, held side by side as (B, T, K·d). Before each sublayer (the mixer, then
the FFN) a gate reads all K streams, each RMS-normed on its own with one zero-centred gain per channel of the K·d:
    n      = [x_k / rms(x_k)]_k · (1 + g)                               (B, T, K·d)
    a      = sigmoid(W_up · silu(W_down · n / K))                       (B, T, K·d), W_down of rank hc_rank
    h      = mean_k(a_k ⊙ n_k)                                          the sublayer's input (B, T, d)
    w      = 2 sigmoid(W_inject · n / K)                                one weight per stream (B, T, K)
    x_k   += w_k · sublayer(h)                                          every stream gains the output
so the gate's norm is the sublayer's input norm (the block has none of its own). The stack starts every stream at
the token embedding and ends with the same mix without the injection, h of a last gate (`hc_mix`), in place of a
final norm. Shapes: B batch, T tokens, K streams, d = d_model."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LlmarchError
from .linear import Linear


def check(cfg) -> None:
    """hc_streams and hc_rank: a sequential pre-norm decoder with one RMSNorm kind for the gates' norms."""
    if cfg.hc_streams < 1 or cfg.hc_rank < 1:
        raise LlmarchError(f"hc_streams and hc_rank must be >= 1, got {cfg.hc_streams} and {cfg.hc_rank}")
    if cfg.hc_streams > 1 and (cfg.block != "sequential" or cfg.norm_placement != "pre" or cfg.n_decoder_layers
                               or cfg.altup_streams > 1 or cfg.laurel_rank or cfg.ple_dim
                               or cfg.norm not in ("rmsnorm", "rmsnorm_offset") or cfg.moe_shortcut):
        raise LlmarchError("hc_streams > 1 (hyper-connections) needs a sequential pre-norm decoder-only block with "
                           "rmsnorm or rmsnorm_offset, and no AltUp, LAuReL, per-layer inputs or moe_shortcut")


class GatedResidual(nn.Module):
    """One gate: `mix` gives a sublayer's input h and the streams' weights w; `add` puts its output into the streams.
    inject=False: the stack's closing mix, h alone."""

    def __init__(self, cfg, inject: bool = True):
        super().__init__()
        K, d = cfg.hc_streams, cfg.d_model
        self.streams, self.eps, self.offset = K, cfg.norm_eps, cfg.norm == "rmsnorm_offset"
        self.norm = nn.Parameter(torch.zeros(K * d) if self.offset else torch.ones(K * d))  # g over the K·d
        self.down = Linear(K * d, cfg.hc_rank, bias=False)
        self.up = Linear(cfg.hc_rank, K * d, bias=False)
        self.inject = Linear(K * d, K, bias=False) if inject else None

    def _normed(self, x: torch.Tensor) -> torch.Tensor:
        """Each stream over its own RMS, times the gain, in fp32: (B, T, K·d)."""
        h = x.float().unflatten(-1, (self.streams, -1))
        h = (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)).flatten(-2)
        g = self.norm.float()
        return (h * (1.0 + g if self.offset else g)).type_as(x)

    def mix(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, T, K·d) -> h (B, T, d), w (B, T, K) (None without the injection)."""
        n = self._normed(x)
        a = torch.sigmoid(self.up(F.silu(self.down(n) / self.streams)))
        h = (a * n).unflatten(-1, (self.streams, -1)).mean(dim=-2)
        inject = self._modules.get("inject")  # None (in __dict__) for the closing mix
        return h, None if inject is None else 2 * torch.sigmoid(inject(n) / self.streams)

    @staticmethod
    def add(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """x (B, T, K·d) + w_k · y (B, T, d) into every stream k."""
        return x + (y.unsqueeze(-2) * w.unsqueeze(-1)).flatten(-2)
