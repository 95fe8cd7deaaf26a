"""Whisper's log-mel spectrogram (Radford et al. 2022, §2.2), the input_features its encoder front end reads
(layers/encoder_inputs.py), as transformers' WhisperFeatureExtractor computes it with torch: 16 kHz audio cut or
padded with zeros to 30 s, a short-time Fourier transform of 25 ms Hann windows every 10 ms (n_fft 400, hop 160,
centred: reflected at both ends), power spectra through M Slaney-normalised triangular mel filters (0-8 kHz, the
Slaney mel scale), then
    L = log10(max(mel, 1e-10)),    L = max(L, max(L) - 8),    features = (L + 4) / 4
each row against its own maximum. Audio loading and resampling are the caller's."""
from __future__ import annotations

import numpy as np
import torch

SAMPLE_RATE, N_FFT, HOP, SECONDS = 16000, 400, 160, 30


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above (27 mels per factor 6.4)."""
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) * (27.0 / np.log(6.4)), 3.0 * f / 200.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return np.where(m >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (m - 15.0)), 200.0 * m / 3.0)


def mel_filters(n_mels: int) -> torch.Tensor:
    """(n_fft / 2 + 1, n_mels) float32: triangles between mel-spaced frequencies, each scaled by 2 / its width in Hz
    (Slaney's constant energy per filter), computed in float64."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(8000.0)), n_mels + 2))
    bins = np.linspace(0, SAMPLE_RATE // 2, N_FFT // 2 + 1)
    slopes = edges[None, :] - bins[:, None]  # (F, M + 2)
    width = np.diff(edges)
    tri = np.maximum(0.0, np.minimum(-slopes[:, :-2] / width[:-1], slopes[:, 2:] / width[1:]))
    return torch.from_numpy(tri * (2.0 / (edges[2:] - edges[:-2]))[None, :]).float()


def log_mel_spectrogram(audio, n_mels: int = 80, whole: bool = False) -> torch.Tensor:
    """audio: (N,) or (B, N) samples at 16 kHz (a numpy array or tensor) -> (B, n_mels, 3000) float32 features.
    whole: all of the audio, (B, n_mels, N // 160), neither cut nor padded (WhisperFeatureExtractor with
    truncation=False, padding="longest": long-form transcription's input), each row against its own maximum."""
    wave = torch.as_tensor(np.asarray(audio, dtype=np.float32))
    wave = wave[None] if wave.dim() == 1 else wave
    if not whole:
        n = SAMPLE_RATE * SECONDS
        wave = torch.nn.functional.pad(wave[:, :n], (0, max(0, n - wave.shape[1])))
    stft = torch.stft(wave, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True)
    power = (stft[..., :-1].abs() ** 2).contiguous()  # (B, F, frames): the last frame dropped, as Whisper's
    log = torch.clamp(mel_filters(n_mels).T @ power, min=1e-10).log10()
    log = torch.maximum(log, log.amax(dim=(1, 2), keepdim=True) - 8.0)
    return (log + 4.0) / 4.0
