"""Inkling 2 Loop's messages between passes (recurrence 'loop' with loop_message_rank; transformers'
Inkling2LoopMessageAttentionResidual and Inkling2LoopMessageGate). Each pass over the looped blocks restarts from the
prelude's output; in the passes after the first, looped layer l reads four messages (for its queries', keys',
values' and FFN's inputs) retrieved from the previous pass's stack of block sums, S (B, T, m, C) (the blocks that
pass finished after the one it started with, then its partial sum), by a depth attention with learned queries q_l
(4, C), zero at init:

    msg_l = softmax(q_l . rms(S)^T / sqrt(C)) rms(S)                   (depth_attention.py's, four queries)

and each input x is mixed with its message m by a gate of rank r over both, normalised without gain:

    g = D [rms(x); rms(m)] (D: (r, 2C)),   x' = (1 - tanh(F g)) x + tanh(G g) m.

All in fp32, as transformers keeps these modules."""
from __future__ import annotations

import torch
from torch import nn

from .depth_attention import DepthAttention
from .norms import rms_normalize


class MessageGate(nn.Module):
    """(1 - tanh(F g)) x + tanh(G g) m, g = D [rms(x); rms(m)]."""

    def __init__(self, d_model: int, rank: int, eps: float):
        super().__init__()
        self.down = nn.Linear(2 * d_model, rank, bias=False)
        self.forget = nn.Linear(rank, d_model, bias=False)
        self.gain = nn.Linear(rank, d_model, bias=False)
        self.eps = eps

    def forward(self, x: torch.Tensor, message: torch.Tensor) -> torch.Tensor:
        x, message = x.float(), message.float()
        g = self.down(torch.cat([rms_normalize(x, self.eps), rms_normalize(message, self.eps)], dim=-1))
        return (1 - torch.tanh(self.forget(g))) * x + torch.tanh(self.gain(g)) * message


class MessageGates(nn.Module):
    """A looped block's four gates: its queries', keys', values' and FFN's inputs (q, k, v, mlp)."""

    def __init__(self, cfg):
        super().__init__()
        make = lambda: MessageGate(cfg.d_model, cfg.loop_message_rank, cfg.norm_eps)  # noqa: E731
        self.q, self.k, self.v, self.mlp = make(), make(), make(), make()

    def attention_inputs(self, inputs: torch.Tensor, messages: torch.Tensor) -> torch.Tensor:
        """inputs (B, T, 1 or 3, C), the mixer's (one shared, or the queries', keys' and values'); messages
        (B, T, 4, C) -> the three gated inputs (B, T, 3, C)."""
        n = inputs.shape[2]
        gates = (self.q, self.k, self.v)
        return torch.stack([g(inputs[:, :, min(j, n - 1)], messages[:, :, j]) for j, g in enumerate(gates)], dim=2)


class MessageAttention(nn.Module):
    """The four learned queries of each looped layer, (L, 4, C), over the previous pass's stack."""

    def __init__(self, cfg, looped: int):
        super().__init__()
        self.query = nn.Parameter(torch.zeros(looped, 4, cfg.d_model))

    def init_ssm(self) -> None:
        """The stack's init hook: the queries back to zero, a plain mean over the blocks."""
        nn.init.zeros_(self.query)

    def macs(self, rows: int) -> int:
        """Multiply-adds per token of one looped layer's retrieval over `rows` rows: its four queries' scores and
        weighted sums (analysis/accounting.py)."""
        return 2 * self.query[0].numel() * rows

    def forward(self, stack: torch.Tensor, layer: int) -> torch.Tensor:
        """stack (B, T, m, C) -> the looped layer's messages (B, T, 4, C)."""
        return DepthAttention.attend(stack, self.query[layer])
