"""Penalties on tokens the text already holds, applied to a step's logits before any sampler sees them:
- the repetition penalty (Keskar et al. 2019, CTRL §4.1): the logit of every token in the prompt or the output
  so far divided by theta where it is positive and multiplied by it where it is negative (theta > 1 discourages
  repeats), as transformers' RepetitionPenaltyLogitsProcessor and llama.cpp's `repeat_penalty`;
- the presence and frequency penalties of OpenAI's API: logit_j - presence * [c_j > 0] - frequency * c_j, c_j the
  times token j was generated so far (the output only, not the prompt: as the API's own description and vLLM);
- a fixed bias per token id (OpenAI's logit_bias), added last.
The counts live on the logits' device and are updated by a scatter: no host read in the decode loop."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch

from ..errors import LlmarchError


@dataclass(frozen=True)
class Penalties:
    repetition: float = 1.0  # 1: off
    presence: float = 0.0  # 0: off
    frequency: float = 0.0  # 0: off
    bias: tuple[tuple[int, float], ...] = ()  # (token id, added to its logit) pairs; (): none

    def __post_init__(self) -> None:
        if not (math.isfinite(self.repetition) and self.repetition > 0):
            raise LlmarchError(f"repetition_penalty must be > 0 (1: none), got {self.repetition}")
        for name in ("presence", "frequency"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise LlmarchError(f"{name}_penalty must be a finite number (0: none), got {value}")
        if not all(isinstance(i, int) and i >= 0 and math.isfinite(b) for i, b in self.bias):
            raise LlmarchError(f"a logit bias takes token ids >= 0 and finite numbers, got {self.bias}")

    @property
    def active(self) -> bool:
        return self.repetition != 1.0 or self.presence != 0.0 or self.frequency != 0.0 or bool(self.bias)

    def start(self, prompt: torch.Tensor, vocab: int, mask: torch.Tensor | None = None) -> "Seen":
        """The state for rows continuing prompt (B, P) (mask (B, P): 1 for real tokens, None: all real)."""
        return Seen(self, prompt, vocab, mask)


class Seen:
    """What the penalties read, per row: which ids the prompt holds (for the repetition penalty) and how often
    each id has been generated."""

    def __init__(self, penalties: Penalties, prompt: torch.Tensor, vocab: int, mask: torch.Tensor | None):
        self.p = penalties
        B, self.P = prompt.shape
        self.counts = torch.zeros(B, vocab, device=prompt.device)  # (B, V)
        self.in_prompt = self.bias = None
        if penalties.bias:
            if max(i for i, _ in penalties.bias) >= vocab:
                raise LlmarchError(f"a logit bias names a token id beyond the vocabulary's {vocab}")
            self.bias = torch.zeros(vocab, device=prompt.device)
            for i, b in penalties.bias:
                self.bias[i] = b
        if penalties.repetition != 1.0:  # a left-padded prompt's padding is no token of the text
            real = torch.ones_like(prompt, dtype=torch.bool) if mask is None else mask.bool()
            self.in_prompt = torch.zeros(B, vocab + 1, dtype=torch.bool, device=prompt.device)
            self.in_prompt.scatter_(1, torch.where(real, prompt, vocab), True)  # padding lands in column V, cut
            self.in_prompt = self.in_prompt[:, :vocab]

    def apply(self, logits: torch.Tensor, counts: torch.Tensor | None = None) -> torch.Tensor:
        """logits (B, V) -> the penalized logits (float32, as the samplers compute); counts: (B, V) generated
        counts to read instead of this state's own."""
        p, logits = self.p, logits.float()
        counts = self.counts if counts is None else counts
        generated = counts > 0
        if p.repetition != 1.0:
            seen = generated | self.in_prompt
            logits = torch.where(seen, torch.where(logits > 0, logits / p.repetition, logits * p.repetition), logits)
        if p.presence:
            logits = logits - p.presence * generated
        if p.frequency:
            logits = logits - p.frequency * counts
        if self.bias is not None:
            logits = logits + self.bias
        return logits

    def rescored(self, logp: torch.Tensor, sequences: torch.Tensor) -> torch.Tensor:
        """Beam search's penalize (beam.py): logp (B, V) adjusted by each row's sequence (B, cur), its prompt and
        then its tokens so far. Beams swap histories at every step, so the counts are taken afresh from them; the
        prompt's ids are each beam's row's, whichever beam continues it."""
        generated = sequences[:, self.P:]
        self.counts.zero_().scatter_add_(1, generated, torch.ones_like(generated, dtype=self.counts.dtype))
        return self.apply(logp)

    def along(self, logits: torch.Tensor, tokens: list[int]) -> torch.Tensor:
        """Speculative decoding, for one row: logits (T, V), the last T positions' after a drafted continuation
        `tokens` (T - 1 <= len(tokens)), position j's after tokens[:len(tokens) - T + 1 + j] -> each penalized as if
        those tokens had been generated. The target reads a position only where every drafted token before it
        was kept, so this is what plain decoding would have applied there."""
        T, V = logits.shape
        device = self.counts.device
        before = len(tokens) - T + 1
        read = torch.arange(len(tokens), device=device) < before + torch.arange(T, device=device)[:, None]  # (T, L)
        drafted = read.float() @ torch.nn.functional.one_hot(torch.tensor(tokens, dtype=torch.long, device=device),
                                                             V).float()  # (T, V): row j counts tokens[:before + j]
        return self.apply(logits, self.counts[:1] + drafted)

    def copy(self) -> "Seen":
        """This state with tensors of its own: ordinary tensors where its own were made under inference_mode (a
        speculator's, which the server's batch then updates in place outside it)."""
        other = copy.copy(self)
        for name in ("counts", "in_prompt", "bias"):
            value = getattr(self, name)
            setattr(other, name, None if value is None else value.clone())
        return other

    def add(self, tokens: torch.Tensor) -> None:
        """tokens (B,): each row's newly generated id."""
        self.counts.scatter_add_(1, tokens[:, None], torch.ones_like(self.counts[:, :1]))
