"""`llmarch generate --output-format srt|vtt|json [--output FILE]` (audio/transcript_files.py): openai-whisper's
writers' layouts (whisper/utils.py), checked through files of a tiny random Whisper (test_whisper_words.py's
checkpoint: 2 s windows) over 4.5 s of audio: the JSON's segments are transformers' long-form generate segments
(return_segments), its words the speech-recognition pipeline's return_timestamps="word" words; the srt and vtt files
equal what a small formatter written here makes of those segments' times and texts; the time format by hand-written
cases; bad input one line, exit 2, an existing --output file untouched."""
from __future__ import annotations

import json
from contextlib import nullcontext

import numpy as np
import pytest

from llmarch.audio.transcript_files import format_timestamp, srt, vtt
from llmarch.cli import main
from test_whisper_words import STEPS, _audio, _checkpoint, _pipeline_words

transformers = pytest.importorskip("transformers")
SECONDS = 4.5


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("whisper-files")
    ckpt = _checkpoint(tmp / "ckpt")
    inputs = ckpt[5](_audio(SECONDS), sampling_rate=16000, return_tensors="pt", truncation=False,
                     padding="longest", return_attention_mask=True)
    np.save(tmp / "f.npy", inputs.input_features.numpy())
    return ckpt, tmp / "f.npy", inputs


def _cli(ckpt, *extra) -> int:
    (path, *_), features, _ = ckpt
    return main(["generate", "--checkpoint", str(path), "--input-features", str(features), "--language", "en",
                 "--temperature", "0", "--max-new-tokens", str(STEPS), *extra])


def _stamp(seconds: float, sep: str, hours: bool = True) -> str:
    """An independent HH:MM:SS<sep>mmm (hours left out under an hour where hours=False)."""
    ms = int(round(seconds * 1000))
    h, m, s, f = ms // 3_600_000, ms // 60_000 % 60, ms // 1000 % 60, ms % 1000
    return (f"{h:02d}:" if hours or h else "") + f"{m:02d}:{s:02d}{sep}{f:03d}"


def _expected(cues, form: str) -> str:
    if form == "srt":
        return "".join(f"{i}\n{_stamp(a, ',')} --> {_stamp(b, ',')}\n{t}\n\n" for i, (a, b, t) in enumerate(cues, 1))
    return "WEBVTT\n\n" + "".join(f"{_stamp(a, '.', False)} --> {_stamp(b, '.', False)}\n{t}\n\n" for a, b, t in cues)


def _reference_segments(ckpt):
    """transformers' long-form segments: (start, end, text), the text its tokenizer's of the text tokens."""
    (_, ref, _, tok, gen, _), _, inputs = ckpt
    out = ref.generate(inputs.input_features, attention_mask=inputs.attention_mask, return_timestamps=True,
                       return_segments=True, language="en", max_new_tokens=STEPS)
    begin = gen["no_timestamps_token_id"] + 1
    return [(float(s["start"]), float(s["end"]),
             tok.decode([t for t in s["tokens"].tolist() if t < begin], skip_special_tokens=True))
            for s in out["segments"][0]]


@pytest.mark.parametrize("seconds,hours,marker,written", [
    (0.0, True, ",", "00:00:00,000"), (0.0, False, ".", "00:00.000"), (59.999, True, ",", "00:00:59,999"),
    (59.9996, True, ",", "00:01:00,000"), (3600.5, False, ".", "01:00:00.500"), (3600.5, True, ",", "01:00:00,500"),
    (1.0004, True, ",", "00:00:01,000"), (1.0006, False, ".", "00:01.001"), (7322.25, True, ",", "02:02:02,250")])
def test_format_timestamp(seconds, hours, marker, written):
    """openai-whisper's format_timestamp: rounded to the millisecond, the hours always (srt) or past an hour (vtt)."""
    assert format_timestamp(seconds, hours, marker) == written
    assert _stamp(seconds, marker, hours) == written


def test_writers_by_hand():
    """Cue texts stripped, "-->" written "->"; by words where the segments hold them: a segment without words
    gives no cue, the first word stripped, the cue from the first word's start to the last's end."""
    result = {"text": " a --> b c", "segments": [{"id": 0, "start": 0.0, "end": 1.5, "text": " a --> b"},
                                                 {"id": 1, "start": 61.0, "end": 3600.5, "text": " c "}]}
    assert srt(result) == "1\n00:00:00,000 --> 00:00:01,500\na -> b\n\n2\n00:01:01,000 --> 01:00:00,500\nc\n\n"
    assert vtt(result) == "WEBVTT\n\n00:00.000 --> 00:01.500\na -> b\n\n01:01.000 --> 01:00:00.500\nc\n\n"
    words = {"text": "", "segments": [
        {"start": 0.0, "end": 2.0, "text": " Hi there.", "words": [{"word": " Hi", "start": 0.1, "end": 0.4},
                                                                  {"word": " there.", "start": 0.5, "end": 0.9}]},
        {"start": 2.0, "end": 3.0, "text": "", "words": []}]}
    assert srt(words) == "1\n00:00:00,100 --> 00:00:00,900\nHi there.\n\n"
    with pytest.raises(ValueError, match=">= 0"):
        format_timestamp(-0.5)


@pytest.mark.parametrize("form", ["srt", "vtt", "json"])
def test_segment_files_equal_the_reference(ckpt, tmp_path, capsys, form):
    """Without --timestamps (srt, vtt and json turn them on, as whisper's command writes timed segments): the file
    holds transformers' segments, each a cue; printed alike without --output."""
    segments = _reference_segments(ckpt)
    assert len(segments) > 3 and max(s for s, _, _ in segments) >= 2.0  # more than one window
    out = tmp_path / f"t.{form}"
    assert _cli(ckpt, "--output-format", form, "--output", str(out)) == 0
    assert capsys.readouterr().out == ""
    written = out.read_text(encoding="utf-8")
    if form == "json":
        got = json.loads(written)
        assert [(s["id"], s["start"], s["end"], s["text"]) for s in got["segments"]] == [
            (i, pytest.approx(a, abs=5e-4), pytest.approx(b, abs=5e-4), t) for i, (a, b, t) in enumerate(segments)]
        assert got["text"] == "".join(t for _, _, t in segments) and "words" not in got["segments"][0]
    else:
        assert written == _expected([(a, b, t.strip().replace("-->", "->")) for a, b, t in segments], form)
    assert _cli(ckpt, "--output-format", form) == 0
    assert capsys.readouterr().out == written


def test_word_files_equal_the_pipeline(ckpt, tmp_path, capsys):
    """--word-timestamps: the JSON's words, segment after segment, are the pipeline's words; the srt and vtt cues a
    segment's words each, by the independent formatter."""
    (path, *_), _, _ = ckpt
    assert _cli(ckpt, "--word-timestamps", "--output-format", "json", "--output", str(tmp_path / "w.json")) == 0
    got = json.loads((tmp_path / "w.json").read_text())
    flat = [(w["word"], w["start"], w["end"]) for s in got["segments"] for w in s["words"]]
    assert flat == _pipeline_words(ckpt[0], _audio(SECONDS), "en", None, 1) and len(flat) > 3
    cues = [(s["words"][0]["start"], s["words"][-1]["end"], "".join(w["word"] for w in s["words"]).lstrip())
            for s in got["segments"] if s["words"]]
    for form in ("srt", "vtt"):
        assert _cli(ckpt, "--word-timestamps", "--output-format", form) == 0
        assert capsys.readouterr().out == _expected(cues, form)


def test_bad_input_keeps_the_file(ckpt, tmp_path, capsys):
    """An unknown format, an unwritable or directory --output, --output with a text --prompt, several rows in a
    subtitle file: one line, exit 2; a run that fails after the model is read leaves an existing file as it was."""
    (path, *_), features, _ = ckpt
    keep = tmp_path / "keep.srt"
    keep.write_text("mine\n")
    blocked = tmp_path / "file"
    blocked.write_text("")
    two = tmp_path / "two.npy"
    np.save(two, np.concatenate([np.load(features)] * 2))
    cases = [(["--output-format", "docx"], "invalid choice"), (["--output", str(blocked / "x.srt")], "not a directory"),
             (["--output", str(tmp_path)], "is a directory"),
             (["--output-format", "srt", "--output", str(keep), "--input-features", str(two)], "2 rows")]
    for extra, said in cases:  # (the last fails after the checkpoint is read)
        with pytest.raises(SystemExit, match="2") if "docx" in extra else nullcontext():
            assert _cli(ckpt, *extra) == 2
        err = capsys.readouterr().err
        assert said in err and len(err.strip().splitlines()) == 1, err
    assert main(["generate", "--checkpoint", str(path), "--prompt", "hi", "--output", str(keep)]) == 2
    assert "--output" in capsys.readouterr().err
    assert keep.read_text() == "mine\n" and sorted(p.name for p in tmp_path.iterdir()) == ["file", "keep.srt",
                                                                                           "two.npy"]


def test_text_output_and_a_failed_write(ckpt, tmp_path, capsys, monkeypatch):
    """--output of the text format holds what is printed without it; a write that fails at the rename leaves the
    file already there and no temporary file."""
    import os

    from llmarch.rundir import write_text_atomic

    assert _cli(ckpt, "--timestamps") == 0
    printed = capsys.readouterr().out
    assert _cli(ckpt, "--timestamps", "--output", str(tmp_path / "sub" / "t.txt")) == 0
    assert (tmp_path / "sub" / "t.txt").read_text() == printed and capsys.readouterr().out == ""
    keep = tmp_path / "keep.txt"
    keep.write_text("mine\n")

    def refuse(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="No space"):
        write_text_atomic(keep, "new\n")
    assert keep.read_text() == "mine\n" and sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt", "sub"]
