"""Whisper's temperature fallback (Radford et al. 2022, §4.5 and table 7): a window is decoded at the first
temperature, and again at the next one while its decoding looks like a failure, as transformers'
WhisperGenerationMixin.generate_with_fallback and _need_fallback judge it:
- its gzip compression ratio is above compression_ratio_threshold (repetitive text compresses well): the tokens,
  end of text included, int(log2(V) / 8) + 1 little-endian bytes each,, over their zlib size;
- its average log-probability is below logprob_threshold: the mean over the new tokens, end of text included, of
  log_softmax of the scores the decoding drew from, at temperature 1 (transformers' output scores times the
  temperature: the token rules applied, and at a temperature > 0 the top-k / top-p cut);
- unless the window holds no speech: the probability of <|nospeech|> (<|notimestamps|> - 1) after the start of
  transcript above no_speech_threshold while the log-probability is below its threshold; the window is skipped.
The scores are recomputed by one teacher-forced forward over the decoded tokens: the decoding loop keeps none."""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Sequence

import torch

from ..errors import LlmarchError
from .rules import TokenRules
from .sampling import restricted


@dataclass(frozen=True)
class Fallback:
    temperatures: tuple[float, ...] = (0.0,)  # tried in order; 0: greedy (or beam search where beams are asked)
    compression_ratio_threshold: float | None = None  # retry above it; None: never on this ground
    logprob_threshold: float | None = None  # retry below it (a log-probability, <= 0); None: never on this ground
    no_speech_threshold: float | None = None  # skip a window whose <|nospeech|> probability is above it (0 to 1)

    def __post_init__(self) -> None:
        temps = tuple(self.temperatures)
        if not temps or not all(math.isfinite(t) and t >= 0 for t in temps):
            raise LlmarchError(f"temperature must be >= 0 (0 is greedy): one or more finite values, got {list(temps)}")
        object.__setattr__(self, "temperatures", temps)
        c, lp, ns = self.compression_ratio_threshold, self.logprob_threshold, self.no_speech_threshold
        if c is not None and not (math.isfinite(c) and c > 0):
            raise LlmarchError(f"compression_ratio_threshold must be > 0 (e.g. 2.4), got {c}")
        if lp is not None and not (math.isfinite(lp) and lp <= 0):
            raise LlmarchError(f"logprob_threshold is an average log-probability, <= 0 (e.g. -1.0), got {lp}")
        if ns is not None and not (math.isfinite(ns) and 0 <= ns <= 1):
            raise LlmarchError(f"no_speech_threshold is a probability in [0, 1] (e.g. 0.6), got {ns}")
        if ns is not None and lp is None:
            raise LlmarchError("no_speech_threshold skips a window only where logprob_threshold is missed too: give "
                               "logprob_threshold")


def compression_ratio(tokens: Sequence[int], vocab_size: int) -> float:
    """The tokens' bytes over their zlib-compressed bytes (transformers' _retrieve_compression_ratio)."""
    width = int(math.log2(vocab_size) / 8) + 1
    raw = b"".join(t.to_bytes(width, "little") for t in tokens)
    return len(raw) / len(zlib.compress(raw))


@torch.inference_mode()
def _step_logits(model, features: torch.Tensor, prompt: Sequence[int], tokens: Sequence[int]) -> torch.Tensor:
    """(len(tokens), V): the logits each of `tokens` was decoded from, after prompt and the tokens before it."""
    device = next(model.parameters()).device
    ids = torch.tensor([[*prompt, *tokens[:-1]]], device=device)
    return model(decoder_input_ids=ids, input_features=features.to(device)).logits[0, len(prompt) - 1:].float()


def average_logprob(model, features: torch.Tensor, prompt: Sequence[int], tokens: Sequence[int], rules: TokenRules,
                    temperature: float, top_k: int | None, top_p: float | None) -> float:
    """features (1, channels, frames): the mean log-probability of tokens (new ones, end of text included) under
    the scores they were drawn from, renormalised at temperature 1."""
    logits = _step_logits(model, features, prompt, tokens)
    new = torch.tensor([tokens], device=logits.device)
    scores = torch.cat([rules.apply(logits[j:j + 1], new[:, :j]) for j in range(len(tokens))])
    if temperature > 0:
        scores = restricted(scores, temperature, top_k, top_p) * temperature
    logp = torch.log_softmax(scores, dim=-1).gather(-1, new[0, :, None])
    return float(logp.sum() / len(tokens))


def no_speech_probability(model, features: torch.Tensor, prompt: Sequence[int], start_at: int,
                          no_speech_id: int) -> float:
    """The probability of <|nospeech|> after the start of transcript at prompt[start_at] (transformers'
    WhisperNoSpeechDetection: the raw logits, before any rule)."""
    logits = _step_logits(model, features, prompt[:start_at + 1], [0])
    return float(logits[-1].softmax(dim=-1)[no_speech_id])


def judge(fallback: Fallback, tokens: Sequence[int], vocab_size: int, logprob, no_speech: float | None
          ) -> tuple[bool, bool]:
    """(retry at the next temperature, skip the window) for one decoding: tokens with its end of text; logprob a
    function giving its average log-probability (computed only where a threshold reads it)."""
    retry = fallback.compression_ratio_threshold is not None and \
        compression_ratio(tokens, vocab_size) > fallback.compression_ratio_threshold
    if fallback.logprob_threshold is None:
        return retry, False
    low = logprob() < fallback.logprob_threshold
    if no_speech is not None and low and no_speech > fallback.no_speech_threshold:
        return False, True
    return retry or low, False
