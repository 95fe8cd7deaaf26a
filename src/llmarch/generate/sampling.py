"""Next-token samplers: greedy (temperature 0), temperature, top-k, and nucleus / top-p
(Holtzman et al. 2020, §3.1: the smallest set of tokens whose probability mass reaches p)."""
from __future__ import annotations

import math

import torch

from ..errors import LlmarchError


def check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """The sampling settings in range: temperature >= 0 (0: greedy), top_k >= 0 (0 or None: no cut, as in
    transformers), top_p in (0, 1] (None or 1: no cut)."""
    if not math.isfinite(temperature) or temperature < 0:
        raise LlmarchError(f"temperature must be >= 0 (0 is greedy), got {temperature}")
    if top_k is not None and top_k < 0:
        raise LlmarchError(f"top_k must be >= 0 (0: no top-k cut), got {top_k}")
    if top_p is not None and not (math.isfinite(top_p) and 0 < top_p <= 1):
        raise LlmarchError(f"top_p must be in (0, 1] (1: no nucleus cut), got {top_p}")


def sample(logits: torch.Tensor, temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
           generator: torch.Generator | list[torch.Generator] | None = None) -> torch.Tensor:
    """logits (B, V) -> token ids (B,); the settings as check_sampling allows them. generator: one for the batch,
    or one per row (each row then draws what it would alone)."""
    if temperature <= 0:  # max's indices are argmax's (the first of equal maxima), at half its time on CPU (1 x
        return logits.max(dim=-1).indices  # 8,192: 6 us against 12; 1 x 49,152: 24 against 63)
    return draw(probabilities(logits, temperature, top_k, top_p), generator)


def probabilities(logits: torch.Tensor, temperature: float, top_k: int | None = None, top_p: float | None = None
                  ) -> torch.Tensor:
    """logits (..., V) -> the distribution sampling draws from (float32, (..., V)) at temperature > 0: the
    logits divided by the temperature, cut to the top k and then to the nucleus, softmaxed (speculative
    sampling applies it to the target's and the draft's logits alike)."""
    return restricted(logits, temperature, top_k, top_p).softmax(dim=-1)


def restricted(logits: torch.Tensor, temperature: float, top_k: int | None = None, top_p: float | None = None
               ) -> torch.Tensor:
    """logits (..., V) -> the logits sampling draws from, before the softmax: divided by the temperature (> 0),
    those outside the top k and then outside the nucleus at -inf (float32). Long-form transcription scores a
    sampled token against them (generate/whisper_fallback.py), as transformers' output scores hold them."""
    logits = logits.float() / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop = cum - sorted_logits.softmax(dim=-1) >= top_p  # mass before this token already reaches p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


def draw(probs: torch.Tensor, generator: torch.Generator | list[torch.Generator] | None = None) -> torch.Tensor:
    """probs (B, V), rows summing to 1 -> one token id per row (B,); generator: one, or a list of one per row."""
    try:
        if isinstance(generator, list):
            return torch.cat([torch.multinomial(p[None], 1, generator=g)[0] for p, g in zip(probs, generator)])
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    except RuntimeError as e:  # a NaN or infinite logit, found here at no cost to the decode loop
        if "probability tensor" not in str(e):
            raise
        raise LlmarchError("the model's next-token logits are NaN or infinite (weights out of range?)") from None
