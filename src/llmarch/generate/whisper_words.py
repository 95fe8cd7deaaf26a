"""Words with start and end times from a transcription's tokens and their times (whisper_alignment.py), joined as
transformers' speech-recognition pipeline joins them for return_timestamps="word" (tokenization_whisper.py
_decode_asr, _collate_word_timestamps; after OpenAI's whisper/timing.py, Radford et al. 2022):
- the text tokens between a segment's opening and closing timestamps are grouped into words; a token spans from the
  time of the token before it to its own;
- words: pieces that decode to whole characters (_split_tokens_on_unicode), joined where a piece does not begin with
  a space and is no punctuation (_split_tokens_on_spaces), except in languages written without spaces (Chinese,
  Japanese, Thai, Lao, Burmese, Cantonese), where each piece is a word; then opening punctuation joins the word
  after it and closing punctuation the word before it (_merge_punctuations);
- a word's start: its first token's start; its end: its last token's end; both rounded to 10 ms."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .whisper_languages import language_token

UNSPACED = ("zh", "ja", "th", "lo", "my", "yue")  # languages split at whole characters, not spaces
PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
PREPENDED = "\"'\u201c\u00a1\u00bf([{-"
APPENDED = "\"'.\u3002,\uff0c!\uff01?\uff1f:\uff1a\u201d)]}\u3001"
REPLACEMENT = "\ufffd"


@dataclass(frozen=True)
class Word:
    text: str  # as the tokenizer decodes its tokens, leading space included
    start: float  # seconds
    end: float


def words(tokenizer, tokens: Sequence[int], times: Sequence[float], eos: int, begin: int,
          language: str | None = None, window_steps: int = 1500) -> list[Word]:
    """A transcription's new tokens (timestamps and special tokens included: text lies below eos, timestamps from
    begin) and each token's time -> its words. language: a code, token or name (None: English)."""
    unspaced = language is not None and language_token(language)[2:-2] in UNSPACED
    out: list[Word] = []
    text: list[int] = []
    spans: list[tuple[float, float]] = []
    start = None
    for i, (t, when) in enumerate(_segment_times(tokens, begin, window_steps)):
        if t < eos:
            text.append(t)
            spans.append((round(times[i - 1], 2) if i else 0.0, round(times[i], 2)))
        elif when is not None:
            if start is None:
                start = when
            elif when != start:  # a segment's end; one equal to its start opens it again (a model's slip)
                out += _collate(tokenizer, text, spans, unspaced)
                text, spans, start = [], [], None
    return out + _collate(tokenizer, text, spans, unspaced)


def _segment_times(tokens: Sequence[int], begin: int, window_steps: int):
    """Each token with its time in seconds where it is a timestamp (else None), counted on across windows as the
    pipeline counts them: a timestamp below the last one starts the next window, which begins where the last pair's
    first timestamp stood, or a whole window later after a single timestamp."""
    latest = penultimate = windows = 0.0
    for i, t in enumerate(tokens):
        if t < begin:
            yield t, None
            continue
        seconds = float((t - begin) * 0.02)
        if seconds < latest:
            if i >= 2 and not (tokens[i - 1] >= begin and tokens[i - 2] >= begin):
                windows += 0.02 * window_steps
            else:
                latest = penultimate
                windows += penultimate
        penultimate, latest = latest, seconds
        yield t, round((t - begin) * 0.02 + windows, 2)


def _collate(tokenizer, tokens: list[int], spans: list[tuple[float, float]], unspaced: bool) -> list[Word]:
    pieces = _split_unicode(tokenizer, tokens) if unspaced else _split_spaces(tokenizer, tokens)
    _merge_punctuation(pieces)
    return [Word(text, spans[idx[0]][0], spans[idx[-1]][1]) for text, idx in pieces]


def _split_unicode(tokenizer, tokens: list[int]) -> list[tuple[str, list[int]]]:
    """Pieces (text, token indices) cut wherever the tokens so far decode to whole characters (a U+FFFD that the
    whole text also holds there is the text's own)."""
    full = tokenizer.decode(tokens)
    pieces, current, offset = [], [], 0
    for i in range(len(tokens)):
        current.append(i)
        text = tokenizer.decode([tokens[j] for j in current])
        at = text.find(REPLACEMENT)
        if at < 0 or offset + at >= len(full) or full[offset + at] == REPLACEMENT:
            pieces.append((text, current))
            current, offset = [], offset + len(text)
    return pieces


def _split_spaces(tokenizer, tokens: list[int]) -> list[tuple[str, list[int]]]:
    words: list[tuple[str, list[int]]] = []
    for text, idx in _split_unicode(tokenizer, tokens):
        if text.startswith(" ") or text.strip() in PUNCTUATION or not words:
            words.append((text, idx))
        else:
            words[-1] = (words[-1][0] + text, words[-1][1] + idx)
    return words


def _merge_punctuation(pieces: list[tuple[str, list[int]]]) -> None:
    """Opening punctuation onto the word after it, closing punctuation onto the word before it, in place."""
    j = len(pieces) - 1
    for i in range(len(pieces) - 2, -1, -1):
        text, idx = pieces[i]
        if text.startswith(" ") and text.strip() in PREPENDED:
            pieces[j] = (text + pieces[j][0], idx + pieces[j][1])
            pieces[i] = ("", [])
        else:
            j = i
    i = 0
    for j in range(1, len(pieces)):
        if not pieces[i][0].endswith(" ") and pieces[j][0] in APPENDED:
            pieces[i] = (pieces[i][0] + pieces[j][0], pieces[i][1] + pieces[j][1])
            pieces[j] = ("", [])
        else:
            i = j
    pieces[:] = [p for p in pieces if p[0]]


def segment_words(tokenizer, segments, gen: dict, window_steps: int, language: str | None = None) -> list[Word]:
    """A long-form transcription's segments (longform.py, with token_times) -> its words. window_steps: the encoder
    positions of one window (1,500 for Whisper)."""
    tokens = [t for s in segments for t in s.tokens]
    times = [t for s in segments for t in s.token_times]
    eos = gen.get("eos_token_id")
    return words(tokenizer, tokens, times, eos[0] if isinstance(eos, list) else eos, gen["no_timestamps_token_id"] + 1,
                 language, window_steps)
