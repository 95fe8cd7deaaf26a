"""Denoising objectives for encoder-decoder pretraining, as pure functions of one sequence of token ids and a
`numpy.random.Generator`: each returns (encoder inputs, decoder targets).

- span_corruption (T5: Raffel et al. 2020, §3.1.4 and §3.3.4; the reference code is `random_spans_noise_mask`
  and `noise_span_to_unique_sentinel` in google-research/text-to-text-transfer-transformer,
  t5/data/preprocessors.py): drop `noise_density` (15%) of the tokens in spans of mean length 3; each dropped
  span becomes one sentinel in the inputs, and the targets are each sentinel followed by the span it replaced.
  As in the reference code the sequence is cut into alternating spans starting with a kept one and ending with
  a dropped one, so the inputs end with the last sentinel and the targets with the last dropped span (the
  paper's Figure 2 draws one more, final sentinel in the targets; the code does not). T5 appends EOS to both.
- text_infilling (BART: Lewis et al. 2020, §2.2 "Text Infilling", and §3.1/§5 for the 30% used in the final
  model): spans with Poisson(λ=3) lengths cover `mask_ratio` of the tokens; each span, including 0-length ones,
  becomes one mask token; the targets are the whole original sequence.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import LlmarchError


def _random_segmentation(num_items: int, num_segments: int, rng: np.random.Generator) -> np.ndarray:
    """Lengths (num_segments,) of a uniformly random split of num_items items into num_segments non-empty runs:
    the reference's shuffled `first_in_segment` flags, drawn as the run boundaries directly."""
    cuts = np.sort(rng.choice(np.arange(1, num_items), size=num_segments - 1, replace=False))
    return np.diff(np.concatenate([[0], cuts, [num_items]]))


def random_spans_noise_mask(length: int, rng: np.random.Generator, noise_density: float = 0.15,
                            mean_span_length: float = 3.0) -> np.ndarray:
    """(length,) bool, True at dropped tokens: round(length * density) of them (at least 1, at most length-1) in
    round(that / mean_span_length) spans (at least 1), interleaved with as many kept spans, a kept one first."""
    if not 0 < noise_density < 1:
        raise LlmarchError(f"noise_density must be in (0, 1), got {noise_density}")
    if mean_span_length < 1:
        raise LlmarchError(f"mean_span_length must be >= 1, got {mean_span_length}")
    padded = max(length, 2)  # the reference lengthens a 1-token sequence to 2 and cuts the mask back
    num_noise = min(max(round(padded * noise_density), 1), padded - 1)
    # at most as many spans as kept tokens, since each dropped span needs a kept one before it: the reference
    # clamps only to >= 1 and its segmentation breaks at the high densities (near 0.5 and above) that need this
    num_spans = min(max(round(num_noise / mean_span_length), 1), padded - num_noise)
    noise = _random_segmentation(num_noise, num_spans, rng)
    kept = _random_segmentation(padded - num_noise, num_spans, rng)
    runs = np.stack([kept, noise], axis=1).ravel()  # kept_0, noise_0, kept_1, noise_1, ...
    return np.repeat(np.tile([False, True], num_spans), runs)[:length]


def _replace_spans(ids: np.ndarray, drop: np.ndarray, sentinel_ids: Sequence[int]) -> list[int]:
    """ids with each run of `drop` replaced by the next sentinel."""
    first = drop & ~np.concatenate([[False], drop[:-1]])
    out = ids.copy()
    out[first] = np.asarray(sentinel_ids, dtype=ids.dtype)[: int(first.sum())]
    return out[~drop | first].tolist()


def span_corruption(ids: Sequence[int], sentinel_ids: Sequence[int], eos_id: int, rng: np.random.Generator,
                    noise_density: float = 0.15, mean_span_length: float = 3.0) -> tuple[list[int], list[int]]:
    """(inputs, targets): 'a b c d e f' -> ('a <s0> d e <s1>' + eos, '<s0> b c <s1> f' + eos)."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.ndim != 1 or not len(ids):
        raise LlmarchError("span corruption needs a non-empty sequence of token ids")
    noise = random_spans_noise_mask(len(ids), rng, noise_density, mean_span_length)
    spans = max(int((noise & ~np.concatenate([[False], noise[:-1]])).sum()), 1)  # a 1-token sequence: 1 kept span
    if spans > len(sentinel_ids):
        raise LlmarchError(f"span corruption of {len(ids)} tokens makes {spans} spans but the tokenizer has "
                           f"{len(sentinel_ids)} sentinel tokens; use shorter sequences or more sentinels")
    inputs = _replace_spans(ids, noise, sentinel_ids)
    targets = _replace_spans(ids, ~noise, sentinel_ids)
    return inputs + [eos_id], targets + [eos_id]


def _without_eos(seq: Sequence[int], eos_id: int) -> list[int]:
    return list(seq[:-1]) if len(seq) and seq[-1] == eos_id else list(seq)


def reassemble(inputs: Sequence[int], targets: Sequence[int], sentinel_ids: Sequence[int],
               eos_id: int) -> list[int]:
    """The original ids of a span-corruption pair: each sentinel in the inputs replaced by its span."""
    index = {s: k for k, s in enumerate(sentinel_ids)}
    spans: dict[int, list[int]] = {}
    current = None
    for t in _without_eos(targets, eos_id):
        if t in index:
            current = spans.setdefault(index[t], [])
        elif current is None:
            raise LlmarchError("span-corruption targets must begin with a sentinel")
        else:
            current.append(t)
    out = []
    for t in _without_eos(inputs, eos_id):
        if t in index and index[t] not in spans:
            raise LlmarchError(f"sentinel {t} in the inputs has no span in the targets")
        out.extend(spans[index[t]] if t in index else [t])
    return out


def text_infilling(ids: Sequence[int], mask_id: int, rng: np.random.Generator, mask_ratio: float = 0.3,
                   poisson_lambda: float = 3.0, eos_id: int | None = None) -> tuple[list[int], list[int]]:
    """(inputs, targets): round(len * mask_ratio) tokens (at least 1) in spans of Poisson(λ) lengths, each span
    replaced by one mask token, a 0-length span inserting one; targets are the original ids. With eos_id, both
    end with it. The last span is cut so the spans cover exactly the budget, and the spans are placed in a
    uniformly random order among the kept tokens without overlapping (fairseq's implementation draws span starts
    independently, so overlapping spans leave slightly fewer than mask_ratio masked)."""
    if not 0 < mask_ratio < 1:
        raise LlmarchError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
    if poisson_lambda <= 0:
        raise LlmarchError(f"poisson_lambda must be > 0, got {poisson_lambda}")
    ids = [int(i) for i in ids]
    if not ids:
        raise LlmarchError("text infilling needs a non-empty sequence of token ids")
    budget = max(round(len(ids) * mask_ratio), 1)
    lengths: list[int] = []
    while sum(lengths) < budget:  # as fairseq: `budget` draws, more only in the rare case they fall short
        lengths.extend(rng.poisson(poisson_lambda, size=budget).tolist())
    cum = np.cumsum(lengths)
    last = int(np.searchsorted(cum, budget))  # first span that reaches the budget
    lengths = lengths[:last + 1]
    lengths[last] = budget - (int(cum[last - 1]) if last else 0)
    slots = len(ids) - budget + len(lengths)  # every kept token and every span takes one slot
    is_span = np.zeros(slots, dtype=bool)
    is_span[rng.choice(slots, size=len(lengths), replace=False)] = True
    inputs, pos, spans = [], 0, iter(lengths)
    for span in is_span:
        if span:
            inputs.append(mask_id)
            pos += next(spans)
        else:
            inputs.append(ids[pos])
            pos += 1
    end = [] if eos_id is None else [eos_id]
    return inputs + end, ids + end
