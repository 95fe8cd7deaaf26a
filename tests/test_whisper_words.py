"""Word timestamps for Whisper (generate/whisper_alignment.py, whisper_words.py) against transformers, through files:
a tiny random Whisper of 100 encoder positions (a window of 2 s, WhisperFeatureExtractor's chunk_length 2, so that
the 20 ms steps stay) whose generation_config.json names alignment heads, its decoder's final norm bias moved off
zero and <|endoftext|> made likelier (so that rows of a batch end apart), a byte-level BPE WhisperTokenizer (the 256
bytes, three merges, then the special tokens and the 101 timestamps <|0.00|> to <|2.00|>), and the extractor's
features of a synthetic waveform (a tone, amplitude-modulated). Compared: the alignment heads' weights, the warping
path, token timestamps with transformers' generate(return_token_timestamps=True), words with the pipeline's
return_timestamps="word" chunks (the words of a random model are gibberish, bytes included) and through
`llmarch generate --word-timestamps`, and the joining of crafted text with transformers' helper."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import llmarch
from llmarch.errors import LlmarchError
from llmarch.generate.longform import transcribe_long
from llmarch.generate.transcribe import transcribe
from llmarch.generate.whisper_alignment import cross_attention_weights, dtw, token_timestamps
from llmarch.generate.whisper_words import segment_words, words

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

MELS, SOURCE, STEPS, HEADS = 80, 100, 12, [[0, 1], [1, 0], [1, 3]]
SPECIALS = ["<|startoftranscript|>", "<|en|>", "<|zh|>", "<|fr|>", "<|translate|>", "<|transcribe|>", "<|startoflm|>",
            "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]


def _tokenizer(positions: int = SOURCE):
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    merges = [("\u0120", "t"), ("\u0120t", "h"), ("\u0120th", "e")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    tok = transformers.WhisperTokenizer(vocab=vocab, merges=merges)
    tok.add_special_tokens({"additional_special_tokens": SPECIALS})
    tok.add_tokens([transformers.AddedToken(f"<|{0.02 * i:.2f}|>", special=False) for i in range(positions + 1)])
    return tok


def _gen(tok) -> dict:
    ids = dict(zip(SPECIALS, tok.convert_tokens_to_ids(SPECIALS)))
    eos = tok.eos_token_id
    return dict(decoder_start_token_id=ids["<|startoftranscript|>"], eos_token_id=eos, pad_token_id=eos,
                bos_token_id=eos, lang_to_id={k: ids[k] for k in ("<|en|>", "<|zh|>", "<|fr|>")},
                task_to_id={"translate": ids["<|translate|>"], "transcribe": ids["<|transcribe|>"]},
                is_multilingual=True, no_timestamps_token_id=ids["<|notimestamps|>"],
                prev_sot_token_id=ids["<|startofprev|>"], suppress_tokens=[], begin_suppress_tokens=[eos],
                max_length=64, alignment_heads=HEADS)


def _checkpoint(path, positions: int = SOURCE, eos_boost: float = 4.0):
    tok = _tokenizer(positions)
    gen = _gen(tok)
    eos = tok.eos_token_id
    torch.manual_seed(0)
    cfg = transformers.WhisperConfig(vocab_size=len(tok), d_model=32, encoder_layers=2, decoder_layers=2,
                                     encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
                                     decoder_ffn_dim=64, num_mel_bins=MELS, max_source_positions=positions,
                                     max_target_positions=64, pad_token_id=eos, bos_token_id=eos, eos_token_id=eos,
                                     decoder_start_token_id=gen["decoder_start_token_id"], init_std=0.2)
    model = transformers.WhisperForConditionalGeneration(cfg)
    with torch.no_grad():  # the final norm's bias off its zeros, along u; <|endoftext|> given 4u, so rows end apart
        u = torch.nn.functional.normalize(torch.randn(32), dim=0)
        model.model.decoder.layer_norm.bias += u
        model.model.decoder.embed_tokens.weight[eos] += eos_boost * u
    model.save_pretrained(path)
    tok.save_pretrained(path)
    (path / "generation_config.json").write_text(json.dumps(gen))
    extractor = transformers.WhisperFeatureExtractor(feature_size=MELS, chunk_length=positions // 50)
    extractor.save_pretrained(path)
    model.generation_config = transformers.GenerationConfig.from_pretrained(path)  # the file's, as a load reads it
    ref = model.eval()
    return path, ref, llmarch.from_hf(path), tok, gen, extractor


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("whisper-words"))


def _audio(seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * hz * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def test_cross_attention_weights_equal_transformers(ckpt):
    """The alignment heads' weights read through hook_pattern equal transformers' cross_attentions; with no hook
    attached the configured kernel (SDPA) runs and the logits are the same."""
    path, _, ours, _, gen, extractor = ckpt
    ref = transformers.WhisperForConditionalGeneration.from_pretrained(path, attn_implementation="eager").eval()
    features = extractor(_audio(1.0), sampling_rate=16000, return_tensors="pt").input_features
    ids = torch.tensor([[gen["decoder_start_token_id"], 261, 265, 40, 33, 120]])
    with torch.no_grad():
        out = ref(input_features=features, decoder_input_ids=ids, output_attentions=True)
    expected = torch.stack([out.cross_attentions[layer][:, head] for layer, head in HEADS], dim=1)
    got = cross_attention_weights(ours, features, ids, [tuple(h) for h in HEADS])
    assert got.shape == expected.shape and (got - expected).abs().max() < 1e-6
    assert not any(b.cross_attn.hook_pattern.active for b in ours.decoder.blocks)  # the hooks removed
    with torch.no_grad():
        plain = ours(decoder_input_ids=ids, input_features=features).logits
    assert (plain - out.logits).abs().max() < 1e-4


def test_dtw_equals_transformers():
    """The path through cost matrices with ties (small integers) and without, as transformers' loop finds it."""
    from transformers.models.whisper.generation_whisper import _dynamic_time_warping

    g = torch.Generator().manual_seed(0)
    for x in (torch.randn(7, 40, generator=g), torch.randint(0, 3, (9, 30), generator=g).float(),
              torch.randn(1, 5, generator=g), torch.randn(6, 2, generator=g)):
        m = x.double().numpy()
        text, time = dtw(m)
        ref_text, ref_time = _dynamic_time_warping(m)
        assert text.tolist() == ref_text.tolist() and time.tolist() == ref_time.tolist()


def test_token_timestamps_equal_transformers(ckpt):
    """A batch of two waveforms of 0.6 s and 1.5 s (their real frames crop the weights; with timestamps the rows end
    apart, the shorter padded as generate pads it), greedy, with and without timestamp tokens: each token's time
    equals transformers' token_timestamps exactly. Other heads than the alignment heads give other times."""
    _, ref, ours, _, gen, extractor = ckpt
    inputs = extractor([_audio(0.6), _audio(1.5, 300.0)], sampling_rate=16000, return_tensors="pt",
                       return_attention_mask=True)
    features, frames = inputs.input_features, inputs.attention_mask.sum(-1).tolist()
    for timestamps in (False, True):
        with torch.no_grad():
            out = ref.generate(features, attention_mask=inputs.attention_mask, max_new_tokens=STEPS, language="en",
                               return_timestamps=timestamps, return_token_timestamps=True,
                               force_unique_generate_call=True)
        rows = transcribe(ours, features, STEPS, gen, language="en", timestamps=timestamps)
        assert rows == [row[:len(ours_row)] for row, ours_row in zip(out["sequences"].tolist(), rows)]
        assert not timestamps or len(rows[0]) != len(rows[1])
        got = token_timestamps(ours, features, rows, 4 - timestamps, gen, frames)
        for mine, theirs in zip(got, out["token_timestamps"].tolist()):
            assert mine == pytest.approx(theirs[:len(mine)], abs=1e-7)
    other = token_timestamps(ours, features, rows, 3, {**gen, "alignment_heads": [[0, 0]]}, frames)
    assert other != got


def _pipeline_words(ckpt, audio, language: str, written: str | None, num_beams: int):
    _, ref, _, tok, _, extractor = ckpt
    pipe = transformers.pipeline("automatic-speech-recognition", model=ref, tokenizer=tok, feature_extractor=extractor)
    tok.language = written  # what the pipeline splits by (it never reads the decoded language)
    try:
        out = pipe(audio, return_timestamps="word",
                   generate_kwargs=dict(max_new_tokens=STEPS, language=language, num_beams=num_beams))
    finally:
        tok.language = None
    return [(c["text"], *c["timestamp"]) for c in out["chunks"]]


def _our_segments(ckpt, audio, language: str, num_beams: int):
    """The pipeline's features: one window's, cut or padded to it, or past one window all of them."""
    _, _, ours, _, gen, extractor = ckpt
    long = len(audio) > extractor.n_samples
    inputs = extractor(audio, sampling_rate=16000, return_tensors="pt", return_attention_mask=True,
                       **(dict(truncation=False, padding="longest") if long else {}))
    return transcribe_long(ours, inputs.input_features, STEPS, gen, language=language, num_beams=num_beams,
                           word_timestamps=True, audio_frames=inputs.attention_mask.sum(-1).tolist())[0]


def _words(ckpt, segments, split_as: str | None):
    path, _, _, _, gen, _ = ckpt
    tok = llmarch.data.tokenizer.load_tokenizer(path)
    return [(w.text, w.start, w.end) for w in segment_words(tok, segments, gen, SOURCE, split_as)]


CASES = [("zh", "chinese", 1, 2.0), ("en", None, 5, 2.0), ("fr", None, 1, 4.5)]  # en, greedy: the CLI's test


@pytest.mark.parametrize("language,written,num_beams,seconds", CASES, ids=["zh-characters", "beams-5", "windows"])
def test_words_equal_the_pipeline(ckpt, language, written, num_beams, seconds):
    """Words with their times as transformers' pipeline gives them for return_timestamps="word" (its decoding is
    the long-form loop, windows after a segment's last timestamp included: longform.py): split at spaces, or at
    whole characters for a language written without them; with the
    pipeline's default of 5 beams; and over audio of more than one window, each window's times after its start."""
    audio = _audio(seconds)
    expected = _pipeline_words(ckpt, audio, language, written, num_beams)
    segments = _our_segments(ckpt, audio, language, num_beams)
    assert _words(ckpt, segments, language if written else None) == expected
    if seconds > 2:
        assert max(s.start for s in segments) >= 1.0


def test_joining_equals_transformers(ckpt):
    """Crafted text through both tokenizers: UTF-8 characters cut across byte tokens, words with and without their
    space, opening and closing punctuation, and a byte sequence that is no character; joined as transformers'
    _collate_word_timestamps joins them, at spaces and at whole characters (which give other words here)."""
    from transformers.models.whisper.tokenization_whisper import _collate_word_timestamps

    path, _, _, hf_tok, gen, _ = ckpt
    tok = llmarch.data.tokenizer.load_tokenizer(path)
    text = "\u4f60\u597d, (the) \u00bfworld?  \"ok\"\u3002x-y"
    tokens = hf_tok.encode(text, add_special_tokens=False) + [0xE4, 0xBD, 32, 0x80]
    assert tok.decode(tokens) == hf_tok.decode(tokens)
    begin, eos = gen["no_timestamps_token_id"] + 1, gen["eos_token_id"]
    times = [0.02 * (i + 1) for i in range(len(tokens) + 2)]
    stream = [begin, *tokens, begin + 60]
    spans = [(round(times[i - 1], 2), round(times[i], 2)) for i in range(1, len(tokens) + 1)]
    joined = {}
    for language, written in (("en", "english"), ("zh", "chinese"), ("yue", "cantonese")):
        expected = [(w["text"], *w["timestamp"]) for w in
                    _collate_word_timestamps(hf_tok, tokens, spans, written, False)]
        joined[language] = [(w.text, w.start, w.end) for w in words(tok, stream, times, eos, begin, language)]
        assert joined[language] == expected
    assert joined["zh"] != joined["en"]


def test_cli_prints_the_words(ckpt, tmp_path, capsys):
    """`llmarch generate --word-timestamps` on a features file: each word on a line after its times, the pipeline's
    words; a checkpoint without alignment_heads is refused in one line, as are heads past the decoder's."""
    import shutil

    from llmarch.cli import main

    path, _, ours, _, gen, extractor = ckpt
    audio = _audio(2.0)
    np.save(tmp_path / "f.npy", extractor(audio, sampling_rate=16000, return_tensors="np").input_features)
    args = ["generate", "--checkpoint", str(path), "--input-features", str(tmp_path / "f.npy"), "--language", "en",
            "--temperature", "0", "--max-new-tokens", str(STEPS), "--word-timestamps"]
    assert main(args) == 0
    expected = _pipeline_words(ckpt, audio, "en", None, 1)
    assert capsys.readouterr().out == "".join(f"[{s:.2f} -> {e:.2f}]{w}\n" for w, s, e in expected)
    bare = tmp_path / "bare"
    shutil.copytree(path, bare)
    (bare / "generation_config.json").write_text(json.dumps({k: v for k, v in gen.items() if k != "alignment_heads"}))
    assert main([args[0], "--checkpoint", str(bare), *args[3:]]) != 0
    err = capsys.readouterr().err
    assert "alignment_heads" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(LlmarchError, match="alignment head \\(2, 0\\) is not in this decoder"):
        token_timestamps(ours, torch.zeros(1, MELS, 2 * SOURCE), [[1, 2, 3]], 1, {**gen, "alignment_heads": [[2, 0]]})


def test_cli_words_of_a_wav(tmp_path, capsys):
    """`llmarch generate --audio a.wav --word-timestamps` on a checkpoint of Whisper's 30 s window (1,500 positions)
    and 29.5 s of audio: the WAV's features padded to the window, the weights cropped to its 2,950 frames (less each
    window's start), as the pipeline's."""
    import wave

    from llmarch.cli import main

    ckpt30 = _checkpoint(tmp_path, 1500, eos_boost=0.0)  # (with the boost it ends before any text)
    audio = _audio(29.5, 500.0)
    pcm = (audio * 32767).astype("<i2")
    with wave.open(str(tmp_path / "a.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.tobytes())
    assert main(["generate", "--checkpoint", str(tmp_path), "--audio", str(tmp_path / "a.wav"), "--language", "en",
                 "--temperature", "0", "--max-new-tokens", str(STEPS), "--word-timestamps"]) == 0
    expected = _pipeline_words(ckpt30, pcm / 32768.0, "en", None, 1)
    assert len(expected) > 2
    assert capsys.readouterr().out == "".join(f"[{s:.2f} -> {e:.2f}]{w}\n" for w, s, e in expected)
