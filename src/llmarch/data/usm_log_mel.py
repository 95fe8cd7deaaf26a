"""The log-mel features of Gemma 4's audio encoder (the Universal Speech Model's front end, Zhang et al. 2023, "Google
USM", §3.1), as transformers' Gemma4AudioFeatureExtractor computes them with NumPy, reproduced with the same
operations so the features are equal bit for bit (Gemma 3n's extractor differs in its defaults, padding and mask:
not reproduced here):
    the clips, each cut to max_length samples (30 s), zero-padded to the longest, rounded up to 128 samples
    frame_length / 2 zeros before each ("semicausal": the first frame is centred at t = 0)
    frames of frame_length + 1 samples every hop (20 ms every 10 ms at 16 kHz), the last sample dropped (or used by
    preemphasis), times a periodic Hann window, |rfft| over fft_length = the next power of two
    M triangular filters on the HTK mel scale (2595 log10(1 + f / 700)) between min and max_frequency, unnormalised
    log(mel + mel_floor), minus per_bin_mean, over per_bin_stddev (where the config gives them)
    a frame is real where the last sample it reads is; the padded frames' features are zeroed.
Shapes: N clips -> features (N, frames, M) float32 and mask (N, frames) bool."""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import LlmarchError

# what Gemma4AudioFeatureExtractor assumes where a preprocessor config leaves a field out (a saved config holds
# frame_length and hop_length in samples too, which the class recomputes from the _ms fields: so do we)
DEFAULTS = dict(feature_size=128, sampling_rate=16000, padding_value=0.0, frame_length_ms=20.0, hop_length_ms=10.0,
                min_frequency=0.0, max_frequency=8000.0, preemphasis=0.0, preemphasis_htk_flavor=True,
                fft_overdrive=False, dither=0.0, input_scale_factor=1.0, mel_floor=1e-3, per_bin_mean=None,
                per_bin_stddev=None)
MAX_SAMPLES, MULTIPLE = 480_000, 128  # the __call__ defaults: 30 s at most, padded to a multiple of 128 samples


def htk_mel_filters(n_freqs: int, n_mels: int, low: float, high: float, rate: int) -> np.ndarray:
    """(n_freqs, n_mels) float64 triangles between HTK-mel-spaced frequencies (transformers' mel_filter_bank with
    norm None, mel_scale "htk")."""
    mel = np.linspace(2595.0 * np.log10(1.0 + low / 700.0), 2595.0 * np.log10(1.0 + high / 700.0), n_mels + 2)
    edges = 700.0 * (np.power(10, mel / 2595.0) - 1.0)
    slopes = np.expand_dims(edges, 0) - np.expand_dims(np.linspace(0, rate // 2, n_freqs), 1)
    width = np.diff(edges)
    return np.maximum(np.zeros(1), np.minimum(-slopes[:, :-2] / width[:-1], slopes[:, 2:] / width[1:]))


def _frames(wave: np.ndarray, size: int, hop: int) -> np.ndarray:
    """(1, L) -> (1, n, size): the windows every `hop` samples, as strided views."""
    n = (wave.shape[1] - size) // hop + 1
    if n <= 0:
        return np.zeros((1, 0, size), dtype=wave.dtype)
    return np.lib.stride_tricks.as_strided(wave, (1, n, size), (wave.strides[0], wave.strides[1] * hop,
                                                               wave.strides[1]))


def usm_features(clips: list, config: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The clips (16 kHz float32 samples each) -> (features (N, frames, M), mask (N, frames)), with the feature
    extractor's `config` (a preprocessor config's fields; DEFAULTS for those it lacks)."""
    c = {**DEFAULTS, **{k: v for k, v in config.items() if k in DEFAULTS}}
    if c["dither"] or c["sampling_rate"] != 16000:
        raise LlmarchError(f"the audio feature extractor's dither {c['dither']} (random) and sampling_rate "
                           f"{c['sampling_rate']} are not supported: 0 and 16000")
    rate, m = c["sampling_rate"], c["feature_size"]
    length, hop = int(round(rate * c["frame_length_ms"] / 1000.0)), int(round(rate * c["hop_length_ms"] / 1000.0))
    fft = 2 ** math.ceil(math.log2(length)) * (2 if c["fft_overdrive"] else 1)
    window = np.hanning(length + 1)[:-1].astype(np.float32)  # periodic Hann
    filters = htk_mel_filters(fft // 2 + 1, m, c["min_frequency"], c["max_frequency"], rate)
    clips = [np.asarray(x, dtype=np.float32)[:MAX_SAMPLES] for x in clips]
    longest = -(-max(len(x) for x in clips) // MULTIPLE) * MULTIPLE
    features, masks = [], []
    for x in clips:
        wave = np.pad(x, (0, longest - len(x)), constant_values=c["padding_value"])[None]
        real = np.pad(np.ones(len(x), dtype=np.int32), (0, longest - len(x)))
        if c["input_scale_factor"] != 1.0:
            wave = wave * c["input_scale_factor"]
        wave, real = np.pad(wave, ((0, 0), (length // 2, 0))), np.pad(real, (length // 2, 0))  # semicausal
        frames = _frames(wave, length + 1, hop)
        p = c["preemphasis"]
        if p > 0.0 and c["preemphasis_htk_flavor"]:
            frames = np.concatenate([frames[..., :1] * (1.0 - p), frames[..., 1:-1] - p * frames[..., :-2]], -1)
        else:
            frames = frames[..., 1:] - p * frames[..., :-1] if p > 0.0 else frames[..., :-1]
        spec = np.matmul(np.abs(np.fft.rfft(frames * window, n=fft, axis=-1)), filters)
        log = np.log(spec + np.array(c["mel_floor"], dtype=np.float64))
        if c["per_bin_mean"] is not None:
            log = log - np.array(c["per_bin_mean"]).reshape(1, 1, m)
        if c["per_bin_stddev"] is not None:
            log = log / np.array(c["per_bin_stddev"]).reshape(1, 1, m)
        log = log.squeeze(0)
        mask = real[np.arange(log.shape[0]) * hop + length].astype(bool)
        features.append(log.astype(np.float32) * mask[..., None])
        masks.append(mask)
    return torch.from_numpy(np.stack(features)), torch.from_numpy(np.stack(masks))
