"""AltUp (Baykal et al. 2023, "Alternating Updates for Efficient Transformers", NeurIPS; Gemma 3n, altup_streams):
a residual stream K times wider than the blocks compute on, kept as K streams of d_model, (K, B, T, d). Each block
computes on one stream only, and a learned mix carries what it computed to the others (§3, Algorithm 1, with
Gemma 3n's router making the mixing coefficients depend on each token):
    m(x)  = tanh(RMSNorm(x) / d · W_router)                        a K-vector per token (compute_router_modalities)
    predict:  x̂_i = x_i + Σ_j P(m(x_a))_ij x_j                     P: a K×K matrix per token, from K² learned maps
    the block's sublayers run on x̂_a  ->  y
    correct:  x̃_i = x̂_i + (1 + C(m(y))_i) (y - x̂_a)               C: K coefficients per token
a the active stream (altup_active). The stack makes the K streams from the token embedding (stream 0 as it is,
stream j through a d×d projection, rescaled to stream 0's RMS) and merges them after the last block (each stream
j through a projection back, rescaled alike, then the mean of the K). Shapes: K streams, B batch, T tokens,
d = d_model."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import LlmarchError
from .linear import Linear
from .norms import make_norm


def check(cfg) -> None:
    """altup_streams, altup_active, altup_correct_scale, and laurel_rank (layers/laurel.py): Gemma 3n's block."""
    K = cfg.altup_streams
    if K < 1 or not 0 <= cfg.altup_active < K:
        raise LlmarchError(f"altup_streams must be >= 1 and altup_active in [0, altup_streams), got {K} and "
                           f"{cfg.altup_active}")
    if cfg.altup_correct_scale and K == 1:
        raise LlmarchError("altup_correct_scale scales AltUp's active stream: it needs altup_streams > 1")
    if cfg.laurel_rank < 0:
        raise LlmarchError(f"laurel_rank must be >= 0, got {cfg.laurel_rank}")
    if (K > 1 or cfg.laurel_rank) and (cfg.block != "sequential" or cfg.norm_placement not in ("pre", "sandwich")
                                       or cfg.n_decoder_layers or cfg.mixer != "attention"):
        raise LlmarchError("altup_streams and laurel_rank need a sequential pre-norm or sandwich block of attention, "
                           "in a decoder-only or encoder-only stack")


class AltUp(nn.Module):
    """One block's predict and correct steps (transformers' Gemma3nTextAltUp)."""

    def __init__(self, cfg):
        super().__init__()
        K, d = cfg.altup_streams, cfg.d_model
        self.streams, self.active = K, cfg.altup_active
        self.router = Linear(d, K, bias=False)  # modality_router
        self.router_norm = make_norm(cfg)
        self.predict_coefs = Linear(K, K * K, bias=False)
        self.correct_coefs = Linear(K, K, bias=False)
        # the corrected active stream's gain before it feeds the per-layer inputs, where altup_correct_scale says;
        # held either way, as transformers holds it (a checkpoint without the scale still stores it)
        self.out_scale = nn.Parameter(torch.zeros(d))
        self.scaled = cfg.altup_correct_scale

    def _mix(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d) -> (B, T, K): the router's tanh coefficients, from RMSNorm(x) / d."""
        h = self.router_norm(x) * torch.tensor(x.shape[-1] ** -1.0, dtype=x.dtype)
        return torch.tanh(self.router(h).float()).type_as(x)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """x (K, B, T, d) -> the predictions (K, B, T, d): each stream plus a per-token mix of all K."""
        K = self.streams
        coefs = self.predict_coefs(self._mix(x[self.active])).unflatten(-1, (K, K))  # (B, T, K_out, K_in)
        mixed = torch.einsum("btij,jbtd->ibtd", coefs, x)
        return (mixed + x).type_as(x)

    def correct(self, predicted: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """predicted (K, B, T, d), y (B, T, d) what the block computed on the active one -> the new streams."""
        gains = self.correct_coefs(self._mix(y)) + 1.0  # (B, T, K)
        innovation = y - predicted[self.active]  # (B, T, d)
        return (gains.permute(2, 0, 1).unsqueeze(-1) * innovation + predicted).type_as(y)

    def output(self, x: torch.Tensor) -> torch.Tensor:
        """The active stream of x (K, B, T, d), times its learned gain where there is one: what the per-layer
        inputs' gate reads."""
        a = x[self.active]
        return a * self.out_scale if self.scaled else a

    def add_to_rest(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """y (B, T, d) added to streams 1..K-1 of x (transformers' corrected_predictions[1:] += y)."""
        return torch.cat((x[:1], x[1:] + y))


def _rescaled(y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """y with its RMS over d made target's (an RMS floor of 1e-5^1/2, as transformers clamps it)."""
    return y * target / torch.sqrt(y.pow(2).mean(-1, keepdim=True).clamp(min=1e-5))


class AltUpStreams(nn.Module):
    """The stack's K streams from the token embedding, and back to one after the last block."""

    def __init__(self, cfg):
        super().__init__()
        d = cfg.d_model
        self.expand = nn.ModuleList(Linear(d, d, bias=False) for _ in range(cfg.altup_streams - 1))
        self.collapse = nn.ModuleList(Linear(d, d, bias=False) for _ in range(cfg.altup_streams - 1))

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, d) -> (K, B, T, d): x, and each projection of x at x's RMS."""
        target = x.pow(2).mean(-1, keepdim=True) ** 0.5
        return torch.stack([x] + [_rescaled(p(x), target) for p in self.expand])

    def merge(self, x: torch.Tensor) -> torch.Tensor:
        """x (K, B, T, d) -> (B, T, d): the mean of stream 0 and each other stream projected back at its RMS."""
        target = x[0].pow(2).mean(-1, keepdim=True) ** 0.5
        return torch.stack([x[0]] + [_rescaled(p(s), target) for p, s in zip(self.collapse, x[1:])]).mean(0)
