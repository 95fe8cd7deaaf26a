"""16 kHz mono PCM WAV files read with the standard library's `wave` module, as the samples Whisper's log-mel
features (log_mel.py) take: floats in [-1, 1) (16-bit samples / 32768, as soundfile reads them). No resampling or
down-mixing: a file at another rate or with other than one channel is refused. Any length: audio past one 30 s window
is transcribed in windows (generate/longform.py)."""
from __future__ import annotations

import io
import wave

import numpy as np

from ..errors import LlmarchError
from .log_mel import SAMPLE_RATE

_FORMATS = {1: (np.uint8, 128, 128.0), 2: ("<i2", 0, 32768.0), 4: ("<i4", 0, 2.0 ** 31)}  # width: dtype, zero, scale


def read_wav(path, name: str | None = None) -> np.ndarray:
    """(N,) float32 samples of a 16 kHz mono PCM WAV file, from its path or its bytes (name: how errors call it,
    default the path)."""
    data = isinstance(path, bytes)
    path, source = name or ("the WAV data" if data else path), io.BytesIO(path) if data else str(path)
    try:
        with wave.open(source, "rb") as w:
            rate, channels, width, n = w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()
            raw = w.readframes(n)
    except (OSError, EOFError, wave.Error) as e:  # wave's EOFError has no message: a file cut short
        raise LlmarchError(f"cannot read {path} as a PCM WAV file: {str(e) or 'it ends too soon (truncated)'}") from None
    if rate != SAMPLE_RATE or channels != 1 or width not in _FORMATS:
        raise LlmarchError(f"{path}: {rate} Hz, {channels} channel(s), {8 * width}-bit: llmarch reads 16 kHz mono PCM "
                           "(8, 16 or 32-bit) and resamples nothing (convert it first, e.g. ffmpeg -ar 16000 -ac 1)")
    dtype, zero, scale = _FORMATS[width]
    return ((np.frombuffer(raw, dtype=dtype).astype(np.float32) - zero) / scale).astype(np.float32)
