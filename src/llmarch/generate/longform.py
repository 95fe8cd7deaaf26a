"""Long-form transcription: audio of any length in windows of the encoder's span (30 s for Whisper), decoded one
after another (Radford et al. 2022, §4.5), as transformers' WhisperForConditionalGeneration.generate does it for
input_features longer than one window (its sequential algorithm):
- each window starts at `seek` (a feature frame): the next span of frames, zero-padded to a whole window, decoded
  with timestamps from the decoder prompt (generation_config.py), under the temperature fallback
  (whisper_fallback.py); a window without speech is skipped whole;
- the new tokens split into segments at each pair of timestamps (the end of one segment, the start of the next),
  their times the window's start plus the timestamps' (20 ms steps); the next window starts at the last pair's first
  timestamp (text after it was cut mid-sentence and is decoded again), or after the whole window where the tokens
  end on a single timestamp or hold no pair;
- condition_on_prev_tokens: a window's decoder input starts with <|startofprev|> and the last
  max_target_positions // 2 - 1 tokens of the segments so far (each segment that ends on two timestamps without
  its last), while the last window was decoded at a temperature < 0.5; prompt_ids (<|startofprev|> and a prompt's
  tokens) before the first window ("first-segment"; before every one without conditioning) or before every window
  ("all-segments").
Each row is decoded as transformers decodes it alone (in a batch its state couples rows: see
docs/architectures/whisper.md). Like transformers, the first sampled retry leaves later windows
greedy where beam search was asked for (it sets the generation config's num_beams to 1 for the rest of the call)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..errors import LlmarchError
from .decode import generate
from .generation_config import decoder_prompt, needs_language, timestamps_id, token_rules
from .transcribe import STRIDE, TIME_PRECISION, detect_language, end_of_text, window_frames
from .whisper_alignment import alignment_heads, token_timestamps
from .whisper_fallback import Fallback, average_logprob, judge, no_speech_probability

FEATURE_PRECISION = 0.01  # seconds per feature frame (a hop of 160 samples at 16 kHz)
CONDITIONS = ("first-segment", "all-segments")


@dataclass(frozen=True)
class Segment:
    start: float  # seconds from the start of the audio
    end: float
    tokens: tuple[int, ...]  # its tokens, timestamps included (no decoder prompt, no end of text)
    token_times: tuple[float, ...] | None = None  # each token's time in seconds (word_timestamps), else None


def segment_tokens(segments: Sequence[Segment]) -> list[int]:
    """A row's segments' tokens end to end: what transformers' long-form generate returns as the row's sequence."""
    return [t for s in segments for t in s.tokens]


@torch.inference_mode()
def transcribe_long(model, input_features: torch.Tensor, max_new_tokens: int, gen: dict, language: str | None = None,
                    task: str | None = None, fallback: Fallback = Fallback(), condition_on_prev_tokens: bool = False,
                    prompt_ids: Sequence[int] | None = None, prompt_condition_type: str = "first-segment",
                    frames: Sequence[int] | None = None, num_beams: int = 1, seed: int | None = None,
                    suppress: Sequence[int] | None = None, begin_suppress: Sequence[int] | None = None,
                    timestamps: bool = True, word_timestamps: bool = False,
                    audio_frames: Sequence[int] | None = None, **options) -> list[list[Segment]]:
    """input_features (B, channels, frames) of any length, gen a generation config -> each row's segments.
    frames: each row's count of real frames (the rest padding; transformers' attention_mask sums), else all.
    timestamps=False: rows of one window at most, each decoded (under the fallback) to one segment without them.
    seed: the sampled retries draw from one generator seeded with it (None: torch's global generator, as
    transformers draws). options go to generate (top_k, top_p, length_penalty, early_stopping); top_k defaults to
    the generation config's, else 50, as transformers samples.
    word_timestamps: each segment's token_times (whisper_alignment.py: the generation config's alignment_heads), each
    window's weights cropped to the row's audio_frames (its real feature frames, where `frames` counts padding too,
    as transformers' generate counts them for one row: it seeks through the padded window and crops the weights to
    the attention mask's frames) less the window's start; default: frames."""
    B, _, total = input_features.shape
    frames = [total] * B if frames is None else [int(f) for f in frames]
    audio_frames = frames if audio_frames is None else [int(f) for f in audio_frames]
    if word_timestamps:
        alignment_heads(gen)
    if len(frames) != B or not all(0 < f <= total for f in frames):
        raise LlmarchError(f"frames: one count in 1..{total} per row of input_features, got {frames}")
    if max_new_tokens < 1:
        raise LlmarchError(f"max_new_tokens must be >= 1 for long-form transcription, got {max_new_tokens}")
    if prompt_condition_type not in CONDITIONS:
        raise LlmarchError(f"prompt_condition_type {prompt_condition_type!r}: one of {', '.join(CONDITIONS)}")
    if prompt_condition_type == "all-segments" and not condition_on_prev_tokens:
        raise LlmarchError("prompt_condition_type all-segments needs condition_on_prev_tokens")
    if "temperature" in options or "penalties" in options:
        raise LlmarchError("long-form transcription takes its temperatures from fallback (Fallback.temperatures), "
                           "and no repetition penalties")
    options.setdefault("top_k", gen.get("top_k") or 50)
    window = window_frames(model.config)
    if not timestamps and max(frames) > window:
        raise LlmarchError(f"{max(frames)} feature frames are more than one window of {window}: long-form "
                           "transcription needs timestamps (it seeks by them)")
    detected = detect_language(model, input_features[..., :window], gen) if needs_language(gen, language, task) \
        else [None] * B
    run = _Run(model, gen, max_new_tokens, fallback, condition_on_prev_tokens, prompt_ids,
               prompt_condition_type == "all-segments", num_beams,
               None if seed is None else torch.Generator().manual_seed(seed),
               token_rules(gen, suppress, begin_suppress, timestamps), word_timestamps, options)
    start = gen.get("decoder_start_token_id", model.config.decoder_start_id)
    return [run.row(input_features[i:i + 1], frames[i], audio_frames[i],
                    decoder_prompt(gen, start, language, task, timestamps, d)) for i, d in enumerate(detected)]


class _Run:
    """One call's settings, and the state transformers keeps across its windows (num_beams, once a retry samples)."""

    def __init__(self, model, gen, max_new, fallback, condition, prompt_ids, all_segments, num_beams, generator,
                 rules, word_timestamps, options):
        self.model, self.gen, self.word_timestamps, self.max_new = model, gen, word_timestamps, max_new
        self.fallback, self.condition = fallback, condition
        self.prompt_ids = None if prompt_ids is None else list(prompt_ids)
        self.all_segments, self.beams, self.generator, self.rules = all_segments, num_beams, generator, rules
        self.options, self.window = options, window_frames(model.config)
        no_timestamps = timestamps_id(gen)  # windows are cut at timestamps
        self.begin, self.eos = no_timestamps + 1, end_of_text(gen, model.config)
        self.no_speech_id = no_timestamps - 1
        self.first_prompt = self.prompt_ids is not None and not all_segments  # kept as the first "segment"
        self.named_prev_sot = gen.get("prev_sot_token_id")  # <|startofprev|>
        # where the generation config names none, transformers takes the suppressed ids' last but one
        self.prev_sot = self.named_prev_sot if self.named_prev_sot is not None or len(rules.suppress) < 2 else \
            rules.suppress[-2]
        self.ctx = model.config.decoder_context_length or model.config.context_length

    def row(self, features: torch.Tensor, frames: int, audio_frames: int, init: list[int]) -> list[Segment]:
        """features (1, channels, any) with `frames` real ones (audio_frames for word timestamps) -> the row's
        segments."""
        history: list[tuple[int, ...]] = []  # what conditions the next window: the prompt entry, then segments
        if self.first_prompt:
            named = self.prompt_ids[:1] == [self.named_prev_sot]
            history.append(tuple(self.prompt_ids[1:] if named else self.prompt_ids))
        segments: list[Segment] = []
        seek, condition = 0, self.condition
        while seek < frames:
            n = min(frames - seek, self.window)
            x = torch.nn.functional.pad(features[..., seek:seek + n], (0, self.window - n))
            prompt = self._decoder_input(history if condition else [], init)
            tokens, skip, low = self._decode(x, prompt, len(prompt) - len(init))
            condition = self.condition and low
            if skip:
                seek += n
                continue
            times = token_timestamps(self.model, x, [prompt + tokens], len(prompt), self.gen,
                                     [audio_frames - seek])[0][len(prompt):] if self.word_timestamps else None
            tokens = tokens[:-1] if tokens[-1:] == [self.eos] else tokens
            new, offset = split_segments(tokens, seek, n, self.begin, times)
            segments += new
            history += [s.tokens for s in new]
            seek += offset
        return segments

    def _decoder_input(self, history: list[tuple[int, ...]], init: list[int]) -> list[int]:
        if history:
            prev = self.prompt_ids if self.prompt_ids is not None and self.all_segments else \
                [self.prev_sot] if self.prev_sot is not None else []
            # a segment that ends on two timestamps conditions without its last (transformers' PR 35750)
            tokens = [t for s in history for t in (s[:-1] if len(s) > 2 and s[-2] >= self.begin else s)]
            prompt = [*prev, *tokens[-(self.ctx // 2 - 1):], *init]
        else:
            prompt = [*(self.prompt_ids or []), *init]
        if len(prompt) + self.max_new > self.ctx:
            raise LlmarchError(f"a window's decoder input of {len(prompt)} tokens (prompt, previous text and start "
                               f"tokens) and max_new_tokens {self.max_new} exceed the decoder's {self.ctx} positions: "
                               "lower max_new_tokens or shorten the prompt")
        return prompt

    def _decode(self, x: torch.Tensor, prompt: list[int], start_at: int) -> tuple[list[int], bool, bool]:
        """One window under the fallback -> its new tokens (their end of text kept where reached: word timestamps
        read the alignment's weights up to it), whether it is skipped, and whether its last decoding was at a
        temperature < 0.5 (what condition_on_prev_tokens asks for)."""
        fb = self.fallback
        no_speech = None if fb.no_speech_threshold is None else \
            no_speech_probability(self.model, x, prompt, start_at, self.no_speech_id)
        for temperature in fb.temperatures:
            beams = 1 if temperature > 0 else self.beams
            if temperature > 0:
                self.beams = 1
            out = generate(self.model, None, self.max_new, temperature, eos_id=self.eos, input_features=x,
                           decoder_prompt=prompt, rules=self.rules, num_beams=beams, generator=self.generator,
                           **self.options)
            new = out[0, len(prompt):].tolist()
            new = new[:new.index(self.eos) + 1] if self.eos in new else new
            retry, skip = judge(fb, new, self.model.config.vocab_size, lambda: average_logprob(
                self.model, x, prompt, new, self.rules, temperature, self.options.get("top_k"),
                self.options.get("top_p")), no_speech)
            if not retry:
                break
        return new, skip, temperature < 0.5


def split_segments(tokens: Sequence[int], seek: int, n: int, begin: int,
                   token_times: Sequence[float] | None = None) -> tuple[list[Segment], int]:
    """A window's new tokens (from feature frame `seek`, `n` real frames; timestamps from id `begin`) -> its
    segments, and how many frames the next window starts after (transformers' _retrieve_segment). token_times: each
    token's time in the window (whisper_alignment.py), kept in its segment's token_times after the window's start."""
    offset = seek * TIME_PRECISION / STRIDE

    def timed(at: int, cut: int) -> tuple[float, ...] | None:
        return None if token_times is None else tuple(float(t) + offset for t in token_times[at:cut])

    stamp = [t >= begin for t in tokens]
    single = stamp[-2:] == [False, True]  # one timestamp after text at the end: no speech after it
    cuts = [i + 1 for i in range(len(stamp) - 1) if stamp[i] and stamp[i + 1]]
    if not cuts:  # no pair: one segment over the window, to its last timestamp where one is past <|0.00|>
        times = [t for t in tokens if t >= begin]
        last = int(torch.tensor(n) * FEATURE_PRECISION / TIME_PRECISION)  # float32, as transformers computes it
        if times and times[-1] != begin:
            last = times[-1] - begin
        return [Segment(offset, offset + last * TIME_PRECISION, tuple(tokens), timed(0, len(tokens)))], n
    if single:
        cuts.append(len(tokens))
    else:
        cuts[-1] += 1  # the last pair closes the last segment
    segments, at = [], 0
    for j, cut in enumerate(cuts):
        piece = tokens[at:cut]
        end = piece[-1 if j < len(cuts) - 1 or single else -2]
        segments.append(Segment(offset + (piece[0] - begin) * TIME_PRECISION, offset + (end - begin) * TIME_PRECISION,
                                tuple(piece), timed(at, cut)))
        at = cut
    return segments, n if single else (tokens[at - 2] - begin) * STRIDE
