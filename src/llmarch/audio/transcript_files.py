"""A timed transcription (generate/longform.py's segments, generate/whisper_words.py's words) as the files
openai-whisper's command writes for --output_format srt, vtt and json (whisper/utils.py: format_timestamp,
SubtitlesWriter, WriteSRT, WriteVTT, WriteJSON; Radford et al. 2022), laid out as its writers lay them out with
their default options:
- srt: numbered cues, times HH:MM:SS,mmm; vtt: a WEBVTT header, then cues whose times leave out the hours under
  an hour (MM:SS.mmm, its always_include_hours=False); each cue "start --> end", its text, a blank line;
- a cue per segment: its text stripped, "-->" written "->"; with words, a cue per segment that has words, from its
  first word's start to its last word's end, its words joined, the first stripped (iterate_subtitles keeps the
  segments, preserve_segments, where no max_line_count is given);
- json: {"text", "segments": [{"id", "start", "end", "text", "tokens", "words": [{"word", "start", "end"}]}]}, as
  json.dump writes it (ASCII, one line), ended by a newline; times rounded to the millisecond (words: to 10 ms,
  generate/whisper_words.py). Fields openai-whisper adds that no segment here holds (seek, temperature, avg_logprob,
  compression_ratio, no_speech_prob, a word's probability, language) are left out."""
from __future__ import annotations

import json
from typing import Callable


def format_timestamp(seconds: float, always_include_hours: bool = False, decimal_marker: str = ".") -> str:
    """Seconds -> [HH:]MM:SS<marker>mmm, rounded to the millisecond (openai-whisper's format_timestamp)."""
    if not seconds >= 0:
        raise ValueError(f"a timestamp is >= 0 seconds, got {seconds}")
    hours, ms = divmod(round(seconds * 1000.0), 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1_000)
    head = f"{hours:02d}:" if always_include_hours or hours > 0 else ""
    return f"{head}{minutes:02d}:{secs:02d}{decimal_marker}{ms:03d}"


def cues(result: dict, always_include_hours: bool, decimal_marker: str) -> list[tuple[str, str, str]]:
    """A result's subtitles: (start, end, text) a segment, by its words where it has them."""
    def stamp(seconds: float) -> str:
        return format_timestamp(seconds, always_include_hours, decimal_marker)

    out = []
    for s in result["segments"]:
        if "words" not in s:
            out.append((stamp(s["start"]), stamp(s["end"]), s["text"].strip().replace("-->", "->")))
        elif s["words"]:
            text = s["words"][0]["word"].strip() + "".join(w["word"] for w in s["words"][1:])
            out.append((stamp(s["words"][0]["start"]), stamp(s["words"][-1]["end"]), text))
    return out


def srt(result: dict) -> str:
    return "".join(f"{i}\n{a} --> {b}\n{text}\n\n" for i, (a, b, text) in enumerate(cues(result, True, ","), 1))


def vtt(result: dict) -> str:
    return "WEBVTT\n\n" + "".join(f"{a} --> {b}\n{text}\n\n" for a, b, text in cues(result, False, "."))


def as_json(result: dict) -> str:
    return json.dumps(result) + "\n"


WRITERS: dict[str, Callable[[dict], str]] = {"srt": srt, "vtt": vtt, "json": as_json}
OUTPUT_FORMATS = ("text", *WRITERS)  # text: the transcription as `llmarch generate` prints it


def transcript_result(segments, text_of: Callable, words_of: Callable | None = None) -> dict:
    """A row's segments (longform.py's Segment) -> openai-whisper's result dict. text_of(tokens): the tokens' text,
    special tokens and timestamps left out; words_of(segment): its words (whisper_words.py's Word), where asked for."""
    rows = []
    for i, s in enumerate(segments):
        row = dict(id=i, start=round(s.start, 3), end=round(s.end, 3), text=text_of(s.tokens), tokens=list(s.tokens))
        if words_of is not None:
            row["words"] = [dict(word=w.text, start=w.start, end=w.end) for w in words_of(s)]
        rows.append(row)
    return dict(text=text_of([t for s in segments for t in s.tokens]), segments=rows)
