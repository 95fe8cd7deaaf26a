"""T5 span corruption (15% noise in spans of mean length 3, sentinels in order, invertible) and BART text
infilling (30% of tokens in Poisson(3) spans, one mask per span)."""
import numpy as np
import pytest

from llmarch import LlmarchError
from llmarch.train.noising import random_spans_noise_mask, reassemble, span_corruption, text_infilling

EOS, MASK = 999, 998
SENTINELS = list(range(1000, 1100))
IS_SENTINEL = set(SENTINELS)


def _is_subsequence(short, long):
    it = iter(long)
    return all(any(x == y for y in it) for x in short)


def test_span_corruption_reassembles_to_the_original():
    rng = np.random.default_rng(0)
    for _ in range(500):
        ids = rng.integers(0, 900, size=int(rng.integers(1, 300))).tolist()
        inputs, targets = span_corruption(ids, SENTINELS, EOS, rng)
        assert inputs[-1] == EOS and targets[-1] == EOS
        assert reassemble(inputs, targets, SENTINELS, EOS) == ids


def test_span_corruption_example_matches_the_reference_layout():
    inputs, targets = span_corruption(list(range(20)), SENTINELS, EOS, np.random.default_rng(1))
    # 3 noise tokens (round(20 * 0.15)) in 1 span (round(3 / 3)), after a kept span
    assert inputs == list(range(17)) + [1000, EOS] and targets == [1000, 17, 18, 19, EOS]


def test_span_corruption_density_and_span_length_over_a_large_sample():
    rng = np.random.default_rng(0)
    noise = spans = 0
    n, length = 2000, 512
    for _ in range(n):
        inputs, targets = span_corruption(rng.integers(0, 900, size=length).tolist(), SENTINELS, EOS, rng)
        in_sentinels = [t for t in inputs if t in IS_SENTINEL]
        out_sentinels = [t for t in targets if t in IS_SENTINEL]
        assert in_sentinels == out_sentinels == SENTINELS[:len(in_sentinels)]  # in order, one per span
        noise += len(targets) - 1 - len(out_sentinels)
        spans += len(in_sentinels)
    assert abs(noise / (n * length) - 0.15) < 0.01
    assert abs(noise / spans - 3.0) < 0.2


def test_noise_mask_bounds():
    rng = np.random.default_rng(0)
    assert not random_spans_noise_mask(1, rng).any()  # the reference's 1-token case: nothing dropped
    for length in (2, 3, 7, 100):
        mask = random_spans_noise_mask(length, rng, noise_density=0.9, mean_span_length=1.0)
        assert 1 <= mask.sum() <= length - 1 and not mask[0] and mask[-1]  # kept span first, noise span last


def test_span_corruption_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(LlmarchError, match="makes 26 spans but the tokenizer has 10 sentinel"):
        span_corruption(list(range(512)), SENTINELS[:10], EOS, rng)
    with pytest.raises(LlmarchError, match="non-empty"):
        span_corruption([], SENTINELS, EOS, rng)
    with pytest.raises(LlmarchError, match="noise_density"):
        span_corruption([1, 2], SENTINELS, EOS, rng, noise_density=1.5)
    with pytest.raises(LlmarchError, match="begin with a sentinel"):
        reassemble([1, 1000], [5, 1000, 2], SENTINELS, EOS)


def test_text_infilling_masks_spans_at_the_ratio():
    rng = np.random.default_rng(0)
    masked = masks = total = 0
    for _ in range(2000):
        ids = rng.integers(0, 900, size=512).tolist()
        inputs, targets = text_infilling(ids, MASK, rng, eos_id=EOS)
        assert targets == ids + [EOS] and inputs[-1] == EOS
        kept = [t for t in inputs if t != MASK]
        assert _is_subsequence(kept, targets)  # each mask stands for a span; the rest is in order
        masked += len(targets) - len(kept)
        masks += len(inputs) - len(kept)
        total += len(ids)
    assert abs(masked / total - 0.3) < 0.01
    assert abs(masked / masks - 3.0) < 0.2  # Poisson(3) span lengths, 0-length spans counted as inserts


def test_text_infilling_short_and_bad_input():
    rng = np.random.default_rng(0)
    inputs, targets = text_infilling([7], MASK, rng)
    assert set(inputs) == {MASK} and targets == [7]  # the one token masked (0-length spans may add masks)
    inputs, targets = text_infilling(list(range(10)), MASK, rng)
    assert targets == list(range(10)) and MASK in inputs
    with pytest.raises(LlmarchError, match="mask_ratio"):
        text_infilling([1, 2], MASK, rng, mask_ratio=0)
    with pytest.raises(LlmarchError, match="non-empty"):
        text_infilling([], MASK, rng)
