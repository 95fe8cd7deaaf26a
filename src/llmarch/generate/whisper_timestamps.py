"""Whisper's timestamp rules (Radford et al. 2022, §2.3 and appendix: timestamp tokens, quantised to 20 ms, predicted
between text segments), as transformers' WhisperTimeStampLogitsProcessor applies them to each step's scores when a
transcription returns timestamps; ids at and above timestamp_begin (<|notimestamps|> + 1) are the times
<|0.00|>, <|0.02|>, ...:
- <|notimestamps|> never;
- timestamps come in pairs (end of a segment, start of the next), except just before the end of text: after one
  timestamp that follows text, no text (nothing below eos, which sits below the special tokens); after two, no
  timestamp;
- times never decrease: none below the last one, nor equal to it except to close a segment it opened;
- the first new token is a timestamp, at most max_initial_timestamp_index steps in (when given);
- where the probabilities of all the timestamps together exceed that of the most likely text token, a timestamp
  is taken (the text tokens barred).
Vectorised over rows: no host read per row."""
from __future__ import annotations

from dataclasses import dataclass

import torch

NEG = float("-inf")


@dataclass(frozen=True)
class WhisperTimestamps:
    no_timestamps_id: int  # <|notimestamps|>; the timestamps follow it
    eos_id: int  # the end of text: text tokens lie below it
    max_initial_index: int | None = None  # the latest first timestamp, in steps of 20 ms after <|0.00|>; None: any

    @property
    def begin(self) -> int:
        return self.no_timestamps_id + 1

    def apply(self, scores: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
        """scores (B, V) after each row's new tokens generated (B, n) -> the scores the rules leave."""
        tb, (B, n) = self.begin, generated.shape
        scores = scores.clone()
        scores[:, self.no_timestamps_id] = NEG
        is_time = generated >= tb  # (B, n)
        last = is_time[:, -1] if n >= 1 else torch.zeros(B, dtype=torch.bool, device=scores.device)
        penultimate = is_time[:, -2] if n >= 2 else torch.ones(B, dtype=torch.bool, device=scores.device)
        vocab = torch.arange(scores.shape[-1], device=scores.device)
        scores.masked_fill_((last & penultimate)[:, None] & (vocab >= tb), NEG)  # a pair closed: text next
        scores.masked_fill_((last & ~penultimate)[:, None] & (vocab < self.eos_id), NEG)  # one open: no text
        # the last timestamp of each row (they never decrease), tb - 1 where none came yet
        latest = torch.where(is_time, generated, tb - 1).amax(dim=1) if n else torch.full_like(last, tb - 1,
                                                                                              dtype=torch.long)
        floor = torch.where(latest < tb, tb, torch.where(last & ~penultimate, latest, latest + 1))  # (B,)
        scores.masked_fill_((vocab >= tb) & (vocab < floor[:, None]), NEG)
        if n == 0:
            scores[:, :tb] = NEG
            if self.max_initial_index is not None:
                scores[:, tb + self.max_initial_index + 1:] = NEG
        logp = torch.log_softmax(scores.float(), dim=-1)
        take_time = logp[:, tb:].logsumexp(dim=-1) > logp[:, :tb].max(dim=-1).values  # (B,)
        scores[:, :tb] = scores[:, :tb].masked_fill(take_time[:, None], NEG)
        return scores
