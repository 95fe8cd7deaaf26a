"""Token rules: ids a decoding step may not emit, applied to each step's scores (the logits of greedy and sampled
decoding, beam search's log-probabilities) before the penalties (penalties.py), with transformers' semantics:
- suppress: never emitted (SuppressTokensLogitsProcessor: the score set to -inf);
- begin_suppress: not emitted as the first new token (SuppressTokensAtBeginLogitsProcessor; Whisper's blank and
  end of text, so that a transcription does not end before it starts);
- processors: further rules that read the new tokens so far, each an object with
  apply(scores (B, V), generated (B, n)) -> scores, built from a generation config's own fields
  (generation_config.py: Whisper's timestamp rules, whisper_timestamps.py).
A rule only lowers scores to -inf: the order among rules matters only to a processor that renormalises (the
timestamp rules' log-softmax), so the fixed order is transformers' Whisper's: begin_suppress, suppress, processors."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import LlmarchError


@dataclass(frozen=True)
class TokenRules:
    suppress: tuple[int, ...] = ()  # ids never generated; (): none
    begin_suppress: tuple[int, ...] = ()  # ids not generated as the first new token; (): none
    processors: tuple = ()  # rule objects with apply(scores, generated) (generation_config.py builds them)
    begin: int = 0  # the new token begin_suppress is for: 1 where a forced first token (forced_bos_id) comes first

    def __post_init__(self) -> None:
        for name in ("suppress", "begin_suppress"):
            ids = getattr(self, name)
            if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
                raise LlmarchError(f"{name}_tokens takes token ids >= 0, got {list(ids)}")

    @property
    def active(self) -> bool:
        return bool(self.suppress or self.begin_suppress or self.processors)

    def check(self, vocab: int) -> None:
        beyond = [i for i in (*self.suppress, *self.begin_suppress) if i >= vocab]
        if beyond:
            raise LlmarchError(f"suppressed token id {beyond[0]} is beyond the vocabulary's {vocab}")

    def apply(self, scores: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
        """scores (B, V) for the next token after each row's new tokens `generated` (B, n) -> the scores with the
        barred ids at -inf (float32)."""
        scores = scores.float()
        barred = (*self.begin_suppress,) * (generated.shape[1] == self.begin) + self.suppress
        if barred:
            scores = scores.index_fill(-1, torch.tensor(barred, device=scores.device), float("-inf"))
        for rule in self.processors:
            scores = rule.apply(scores, generated)
        return scores
