"""Word timestamps for Whisper (generate/whisper_alignment.py, whisper_words.py) against transformers, through files:
a tiny random Whisper of 100 encoder positions (a window of 2 s, WhisperFeatureExtractor's chunk_length 2, so that
the 20 ms steps stay) whose generation_config.json names alignment heads, a byte-level BPE WhisperTokenizer (the 256
bytes, three merges, then the special tokens and the 101 timestamps <|0.00|> to <|2.00|>), and the extractor's
features of a synthetic waveform (a 440 Hz tone, amplitude-modulated). Compared:
token timestamps with transformers' generate(return_token_timestamps=True), and words with the pipeline's
return_timestamps="word" chunks (the words of a random model are gibberish, bytes included)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import llmarch
from llmarch.errors import LlmarchError
from llmarch.generate.transcribe import transcribe
from llmarch.generate.longform import transcribe_long
from llmarch.generate.whisper_alignment import cross_attention_weights, dtw, token_timestamps
from llmarch.generate.whisper_words import segment_words

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

MELS, SOURCE, STEPS, HEADS = 80, 100, 12, [[0, 1], [1, 0], [1, 3]]
SPECIALS = ["<|startoftranscript|>", "<|en|>", "<|zh|>", "<|fr|>", "<|translate|>", "<|transcribe|>", "<|startoflm|>",
            "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]


def _tokenizer():
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    merges = [("\u0120", "t"), ("\u0120t", "h"), ("\u0120th", "e")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    tok = transformers.WhisperTokenizer(vocab=vocab, merges=merges)
    tok.add_special_tokens({"additional_special_tokens": SPECIALS})
    tok.add_tokens([transformers.AddedToken(f"<|{0.02 * i:.2f}|>", special=False) for i in range(SOURCE + 1)])
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


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("whisper-words")
    tok = _tokenizer()
    gen = _gen(tok)
    eos = tok.eos_token_id
    torch.manual_seed(0)
    cfg = transformers.WhisperConfig(vocab_size=len(tok), d_model=32, encoder_layers=2, decoder_layers=2,
                                     encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
                                     decoder_ffn_dim=64, num_mel_bins=MELS, max_source_positions=SOURCE,
                                     max_target_positions=64, pad_token_id=eos, bos_token_id=eos, eos_token_id=eos,
                                     decoder_start_token_id=gen["decoder_start_token_id"], init_std=0.2)
    transformers.WhisperForConditionalGeneration(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    (path / "generation_config.json").write_text(json.dumps(gen))
    extractor = transformers.WhisperFeatureExtractor(feature_size=MELS, chunk_length=2)
    extractor.save_pretrained(path)
    ref = transformers.WhisperForConditionalGeneration.from_pretrained(path).eval()
    return path, ref, llmarch.from_hf(path), tok, gen, extractor


def _audio(seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * hz * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def test_token_timestamps_equal_transformers(ckpt):
    """A batch of two waveforms of 0.6 s and 1.5 s (their real frames crop the weights), greedy, with and without
    timestamp tokens: each token's time equals transformers' token_timestamps."""
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
        assert rows == out["sequences"].tolist()
        got = token_timestamps(ours, features, rows, len(rows[0]) - STEPS, gen, frames)
        print(got, out["token_timestamps"])
        assert np.array(got) == pytest.approx(out["token_timestamps"].numpy(), abs=1e-6)


def _pipeline_words(ckpt, audio, language: str, written: str | None = None, num_beams: int = 1):
    path, ref, ours, tok, gen, extractor = ckpt
    pipe = transformers.pipeline("automatic-speech-recognition", model=ref, tokenizer=tok, feature_extractor=extractor)
    tok.language = written
    try:
        out = pipe(audio, return_timestamps="word", generate_kwargs=dict(max_new_tokens=STEPS, language=language,
                                                                        num_beams=num_beams))
    finally:
        tok.language = None
    return [(c["text"], *c["timestamp"]) for c in out["chunks"]]


def _our_words(ckpt, audio, language: str, split_as: str | None = None, num_beams: int = 1):
    path, ref, ours, _, gen, extractor = ckpt
    inputs = extractor(audio, sampling_rate=16000, return_tensors="pt", return_attention_mask=True)
    segments = transcribe_long(ours, inputs.input_features, STEPS, gen, language=language, word_timestamps=True,
                               audio_frames=inputs.attention_mask.sum(-1).tolist(), num_beams=num_beams)[0]
    tok = llmarch.data.tokenizer.load_tokenizer(path)
    return [(w.text, w.start, w.end) for w in segment_words(tok, segments, gen, SOURCE, split_as)]


@pytest.mark.parametrize("language,written", [("en", None), ("zh", "chinese")])
def test_words_equal_the_pipeline(ckpt, language, written):
    """Words with their times as transformers' pipeline gives them for return_timestamps="word" (its decoding is
    the long-form loop, windows after a segment's last timestamp included: longform.py), split at spaces or, for
    a language written without them, at whole characters."""
    audio = _audio(2.0)
    expected = _pipeline_words(ckpt, audio, language, written)
    got = _our_words(ckpt, audio, language, language if written else None)
    print(expected, got, sep="\n")
    assert got == expected


def test_words_beams(ckpt):
    audio = _audio(2.0)
    expected = _pipeline_words(ckpt, audio, "en", None, 5)
    got = _our_words(ckpt, audio, "en", None, 5)
    print(expected, got, sep="\n")
    assert got == expected
