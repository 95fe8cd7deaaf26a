"""Long-form transcription (generate/longform.py, whisper_fallback.py) against transformers'
WhisperForConditionalGeneration.generate on features several windows long, through files. A tiny random Whisper
with max_source_positions 16 has a window of 32 feature frames (transformers' num_segment_frames: input stride 2 x
16); its vocabulary: text 0-48, <|startofprev|> 49, <|endoftext|> 50, <|startoftranscript|> 51, languages 52-54,
<|translate|> 55, <|transcribe|> 56, <|nospeech|> 57, <|notimestamps|> 58, and the 17 timestamps of one window
(<|0.00|> to <|0.32|>). A random model seldom ends a window on a timestamp pair: the biased one has a direction u
added to the decoder's final norm bias and, weighted from 2 for <|0.00|> down to 0 for the last, to the timestamps'
embeddings (the head is tied to them), so that early timestamps come often, windows end on pairs mid-window and the
next window starts at the last pair (the seek); the one biased away emits only the timestamps the rules force and
moves on by whole windows. Compared: each row's segments (start and end times, tokens) and its sequence."""
from __future__ import annotations

import importlib
import json
import wave

import numpy as np
import pytest
import torch

import llmarch
from llmarch.data.log_mel import log_mel_spectrogram
from llmarch.errors import LlmarchError
from llmarch.generate.longform import segment_tokens, split_segments, transcribe_long
from llmarch.generate.whisper_fallback import Fallback, compression_ratio

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()
longform = importlib.import_module("llmarch.generate.longform")

MELS, SOURCE, PREV, EOS, START, NOTS = 8, 16, 49, 50, 51, 58
V = NOTS + 1 + SOURCE + 1
WINDOW = 2 * SOURCE
LANGS = {"<|en|>": 52, "<|fr|>": 53, "<|de|>": 54}
GEN = dict(decoder_start_token_id=START, eos_token_id=EOS, pad_token_id=EOS, bos_token_id=EOS, lang_to_id=LANGS,
           task_to_id={"translate": 55, "transcribe": 56}, is_multilingual=True, no_timestamps_token_id=NOTS,
           prev_sot_token_id=PREV, suppress_tokens=[12, PREV], begin_suppress_tokens=[EOS], max_length=40)
STEPS = 10


def _checkpoint(path, bias: float, source: int = SOURCE, vocab: int = V):
    torch.manual_seed(0)
    model = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(
        vocab_size=vocab, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=MELS,
        max_source_positions=source, max_target_positions=48, pad_token_id=EOS, bos_token_id=EOS, eos_token_id=EOS,
        decoder_start_token_id=START, init_std=0.2))
    with torch.no_grad():  # the timestamps given w_t u (w_t from 2 for <|0.00|> down to 0): logits moved by w_t bias
        u = torch.nn.functional.normalize(torch.randn(32), dim=0)
        model.model.decoder.embed_tokens.weight[NOTS + 1:] += torch.linspace(2, 0, vocab - NOTS - 1)[:, None] * u
        model.model.decoder.layer_norm.bias += bias * u
    model.save_pretrained(path)
    (path / "generation_config.json").write_text(json.dumps(GEN))
    return transformers.WhisperForConditionalGeneration.from_pretrained(path).eval(), llmarch.from_hf(path)


@pytest.fixture(scope="module")
def biased(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("biased"), 2.0)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("plain"), -2.0)


def _features(seed: int, frames: int = 2 * WINDOW + 21, rows: int = 1) -> torch.Tensor:
    return torch.randn(rows, MELS, frames, generator=torch.Generator().manual_seed(seed))


def _reference(ref, features, **kw) -> list[list[tuple]]:
    with torch.no_grad():
        out = ref.generate(features, max_new_tokens=STEPS, return_timestamps=True, return_segments=True, **kw)
    rows = [[(float(s["start"]), float(s["end"]), tuple(s["tokens"].tolist())) for s in row] for row in out["segments"]]
    for row, seq in zip(rows, out["sequences"].tolist()):  # the sequences: the segments' tokens end to end
        tokens = [t for s in row for t in s[2]]
        assert seq[:len(tokens)] == tokens and set(seq[len(tokens):]) <= {EOS}
    return rows


def _ours(model, features, **kw) -> list[list[tuple]]:
    return [[(s.start, s.end, s.tokens) for s in row] for row in transcribe_long(model, features, STEPS, GEN, **kw)]


PROMPT = [PREV, 3, 4, 5]
CASES = {"detected-translate": dict(task="translate"),
         "condition": dict(language="en", condition_on_prev_tokens=True), "beams": dict(language="en", num_beams=2),
         "prompt-condition": dict(language="en", prompt_ids=PROMPT, condition_on_prev_tokens=True),
         "prompt-all-segments": dict(language="en", prompt_ids=PROMPT, condition_on_prev_tokens=True,
                                     prompt_condition_type="all-segments")}


@pytest.mark.parametrize("case", CASES)
def test_segments_equal_transformers(biased, case):
    """Greedy and beam search, the language detected (with a task) or given, conditioned on the previous text and a
    prompt."""
    ref, ours = biased
    kw = CASES[case]
    hf = {k: torch.tensor(v) if k == "prompt_ids" else v for k, v in kw.items()}
    features = _features(1)
    assert _ours(ours, features, **kw) == _reference(ref, features, **hf)


def test_the_windows_seek_by_timestamps(biased, plain):
    """The biased model's windows end on timestamp pairs, so windows start where the last pair says (not at whole
    windows: test_segments_equal_transformers compares them); the one biased away holds no pair: each window is
    one segment to the window's end, the next a window on."""
    features = _features(2)
    segments = transcribe_long(biased[1], features, STEPS, GEN, language="en")[0]
    starts = [round(s.start / 0.01) for s in segments]  # in feature frames
    assert any(s % WINDOW for s in starts) and len(segments) > 4
    expected = _reference(plain[0], features, language="en")
    assert _ours(plain[1], features, language="en") == expected
    assert len(expected[0]) == 3 and all(k * 0.32 <= s[0] < (k + 1) * 0.32 for k, s in enumerate(expected[0]))
    assert not any(a > NOTS and b > NOTS for s in expected[0] for a, b in zip(s[2], s[2][1:]))


def test_split_segments():
    """Pairs cut segments; the next window starts at the last pair's first timestamp, or a window on where the
    tokens end on one timestamp after text (transformers' _retrieve_segment)."""
    t = NOTS + 1
    segments, offset = split_segments([t, 7, t + 3, t + 3, 8, t + 5, t + 5, 9], 64, 32, t)
    assert [(s.start, s.end, s.tokens) for s in segments] == [(0.64, 0.7, (t, 7, t + 3)),
                                                              (0.7, 0.74, (t + 3, 8, t + 5, t + 5))]
    assert offset == 10 and segment_tokens(segments) == [t, 7, t + 3, t + 3, 8, t + 5, t + 5]  # 9 decoded again
    segments, offset = split_segments([t, 7, t + 3, t + 3, 8, t + 5], 0, 20, t)
    assert offset == 20 and segments[-1].tokens == (t + 3, 8, t + 5) and segments[-1].end == pytest.approx(0.1)
    segments, offset = split_segments([t, 7, 8, t + 6], 0, 20, t)  # no pair: to its last timestamp
    assert offset == 20 and segments[0].end == pytest.approx(0.12)


def test_rows_of_their_own_lengths(biased):
    """A batch whose rows end apart (transformers' attention_mask; llmarch's frames): each row to its own end."""
    ref, ours = biased
    features = _features(3, rows=2)
    frames = [features.shape[-1], 2 * WINDOW + 5]
    mask = (torch.arange(features.shape[-1]) < torch.tensor(frames)[:, None]).long()
    expected = _reference(ref, features, language="fr", attention_mask=mask)
    assert _ours(ours, features, language="fr", frames=frames) == expected


def _spy_transformers(monkeypatch) -> list[float]:
    """The temperatures transformers decodes its windows at, in order (0 for greedy)."""
    seen, inner = [], transformers.generation.utils.GenerationMixin.generate

    def spy(self, *a, generation_config=None, **kw):
        seen.append(generation_config.temperature if generation_config.do_sample else 0.0)
        return inner(self, *a, generation_config=generation_config, **kw)

    monkeypatch.setattr(transformers.generation.utils.GenerationMixin, "generate", spy)
    return seen


def _spy_ours(monkeypatch) -> list[float]:
    seen, inner = [], longform.generate

    def spy(model, ids, max_new, temperature, **kw):
        seen.append(temperature)
        return inner(model, ids, max_new, temperature, **kw)

    monkeypatch.setattr(longform, "generate", spy)
    return seen


TEMPS = (0.0, 0.4, 0.8)


def test_fallback_equals_transformers(biased, monkeypatch):
    """The temperature fallback: the same windows retried at the same temperatures, and the sampled retries' tokens
    the same, drawn from one generator seeded as transformers' global one (seed= here, torch.manual_seed there).
    The thresholds are such that some windows pass at 0 and some retry: the retries' sequence shows it. Conditioned
    on the previous text: a window after a retry at 0.8 is decoded without it."""
    ref, ours = biased
    features = _features(8, frames=3 * WINDOW)
    fallback = Fallback(TEMPS, 0.6, -1.45)
    theirs, mine = _spy_transformers(monkeypatch), _spy_ours(monkeypatch)
    torch.manual_seed(7)
    expected = _reference(ref, features, language="en", temperature=TEMPS, compression_ratio_threshold=0.6,
                          logprob_threshold=-1.45, condition_on_prev_tokens=True)
    assert _ours(ours, features, language="en", fallback=fallback, seed=7, condition_on_prev_tokens=True) \
        == expected  # top_k 50 by default, as transformers samples
    assert mine == theirs
    firsts = [i for i, t in enumerate(mine) if t == 0.0]  # each window's first decoding
    tries = [b - a for a, b in zip(firsts, firsts[1:] + [len(mine)])]
    assert min(tries) == 1 < max(tries), mine  # windows that pass at once, and ones retried


def test_fallback_with_beams(biased):
    """Beam search at temperature 0, sampled retries: once a retry has sampled, transformers decodes later windows
    greedily (it leaves the generation config's num_beams at 1), and so does llmarch; keeping 2 beams there
    changes these windows' tokens."""
    ref, ours = biased
    features = _features(6, frames=3 * WINDOW)
    torch.manual_seed(7)
    expected = _reference(ref, features, language="en", num_beams=2, temperature=TEMPS,
                          compression_ratio_threshold=0.6, logprob_threshold=-1.45)
    assert _ours(ours, features, language="en", num_beams=2, fallback=Fallback(TEMPS, 0.6, -1.45), seed=7) == expected


def test_no_speech_skips_windows(biased, monkeypatch):
    """A window whose <|nospeech|> probability is above no_speech_threshold while its log-probability misses
    logprob_threshold is skipped whole (no segment from it), as transformers skips it."""
    ref, ours = biased
    features = _features(5, frames=4 * WINDOW)
    torch.manual_seed(3)
    expected = _reference(ref, features, language="en", temperature=(0.0, 0.6), logprob_threshold=-1.3,
                          no_speech_threshold=0.005)
    decoded, split = _spy_ours(monkeypatch), []
    monkeypatch.setattr(longform, "split_segments", lambda *a: split.append(a) or split_segments(*a))
    assert _ours(ours, features, language="en", fallback=Fallback((0.0, 0.6), None, -1.3, 0.005), seed=3) == expected
    assert decoded.count(0.0) > len(split) > 0  # windows decoded, fewer of them split into segments


def test_refusals(biased):
    ours = biased[1]
    features = _features(0)
    for kw, reason in ((dict(fallback=Fallback(), condition_on_prev_tokens=False, prompt_condition_type="all-segments"),
                        "needs condition_on_prev_tokens"),
                       (dict(prompt_condition_type="every"), "one of first-segment"),
                       (dict(frames=[10, 10]), "one count in"),
                       (dict(timestamps=False), "needs timestamps"),
                       (dict(temperature=0.5), "its temperatures from fallback"),
                       (dict(prompt_ids=[PREV, *range(40)]), "exceed the decoder's 48 positions")):
        with pytest.raises(LlmarchError, match=reason):
            transcribe_long(ours, features, STEPS, GEN, language="en", **kw)
    for args, reason in ((((),), "one or more"), (((-0.1,),), ">= 0"), (((0.0,), 0.0), "compression_ratio_threshold"),
                         (((0.0,), None, 0.5), "logprob_threshold is"), (((0.0,), None, -1.0, 1.5), "in \\[0, 1\\]"),
                         (((0.0,), None, None, 0.5), "give logprob_threshold")):
        with pytest.raises(LlmarchError, match=reason):
            Fallback(*args)
    assert compression_ratio([5] * 40, 100) > 2 > compression_ratio(list(range(40)), 100)


def _tokenizer(path, vocab: int) -> None:
    """A word-level tokenizer.json over the ids above: words " w0".." w48", the special tokens, the timestamps."""
    from tokenizers import AddedToken, Tokenizer, decoders, models

    tk = Tokenizer(models.WordLevel({f"\u2581w{i}": i for i in range(PREV)}, unk_token="\u2581w0"))
    tk.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.Fuse()])
    special = ["<|startofprev|>", "<|endoftext|>", "<|startoftranscript|>", *LANGS, "<|translate|>", "<|transcribe|>",
               "<|nospeech|>", "<|notimestamps|>"]
    tk.add_special_tokens([AddedToken(t, special=True) for t in special])
    tk.add_tokens([AddedToken(f"<|{0.02 * i:.2f}|>", special=False) for i in range(vocab - NOTS - 1)])
    assert tk.get_vocab_size() == vocab and tk.token_to_id("<|notimestamps|>") == NOTS
    tk.save(str(path / "tokenizer.json"))


def _wav(path, seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * (300 + 10 * t) * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(tone.tobytes())
    return tone / 32768.0


def test_cli_transcribes_long_audio(tmp_path, capsys):
    """`llmarch generate --audio` on 65 s of a rising tone through a checkpoint of 30 s windows (1500 encoder
    positions): the features of the whole audio as WhisperFeatureExtractor makes them (truncation=False), three
    windows; --timestamps prints each segment after its times, as transformers' long-form segments; a threshold or
    temperature out of range, or a fallback asked of text generation, is one line and exit code 2."""
    from llmarch.cli import main

    ref, _ = _checkpoint(tmp_path, 2.0, source=1500, vocab=NOTS + 1502)
    _tokenizer(tmp_path, NOTS + 1502)
    audio = _wav(tmp_path / "long.wav", 65.0)
    extractor = transformers.WhisperFeatureExtractor(feature_size=MELS)
    features = extractor(audio, sampling_rate=16000, truncation=False, padding="longest",
                         return_tensors="pt").input_features
    assert features.shape[-1] == 6500 and torch.equal(log_mel_spectrogram(audio, MELS, whole=True), features)
    base = ["generate", "--checkpoint", str(tmp_path), "--audio", str(tmp_path / "long.wav"), "--temperature", "0",
            "--max-new-tokens", "6", "--language", "en"]
    with torch.no_grad():
        out = ref.generate(features, max_new_tokens=6, language="en", return_timestamps=True, return_segments=True)
    segments = out["segments"][0]
    assert main([*base, "--timestamps"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("]")[0] for line in lines] == [f"[{float(s['start']):.2f} -> {float(s['end']):.2f}"
                                                      for s in segments]
    assert len(segments) > 3 and float(segments[-1]["end"]) > 60
    for args, reason in ((["--logprob-threshold", "0.5"], "logprob_threshold"),
                         (["--no-speech-threshold", "0.5"], "give logprob_threshold"),
                         (["--temperature", "0,-1"], ">= 0")):
        assert main([*base, *args]) == 2
        err = capsys.readouterr().err
        assert reason in err and len(err.strip().splitlines()) == 1
    assert main(["generate", "--checkpoint", str(tmp_path), "--prompt", "w1", "--temperature", "0,0.5"]) == 2
    assert "are for transcription" in capsys.readouterr().err
