"""Short-form transcription (generate/transcribe.py) against transformers' WhisperForConditionalGeneration.generate
through files, on a tiny random Whisper with a hand-built generation_config.json: text ids 0-49, <|endoftext|> 50,
<|startoftranscript|> 51, three languages 52-54, <|translate|> 55, <|transcribe|> 56, <|notimestamps|> 58 and 41
timestamps from 59 (<|0.00|> to <|0.80|>). The suppressed ids are ones this model emits without the rules
(test_the_rules_bind shows it). transformers is called with force_unique_generate_call=True: one decoding of the
window, which is what llmarch does (without it transformers decodes the rest of a 30 s window again after a
segment's last timestamp, its long-form machinery). suppress_tokens and begin_suppress_tokens are also checked on a
decoder-only model against transformers' general generate, and `llmarch generate --audio` on a generated WAV."""
from __future__ import annotations

import json
import wave

import numpy as np
import pytest
import torch

import llmarch
from llmarch.errors import LlmarchError
from llmarch.generate.generation_config import decoder_prompt, read_generation_config, token_rules
from llmarch.generate.rules import TokenRules
from llmarch.generate.transcribe import transcribe, transcription_text

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

V, MELS, SOURCE, EOS, START, NOTS = 100, 8, 12, 50, 51, 58
LANGS = {"<|en|>": 52, "<|fr|>": 53, "<|de|>": 54}
SUPPRESS, BEGIN = [12, 70], [55, EOS]
GEN = dict(decoder_start_token_id=START, eos_token_id=EOS, pad_token_id=EOS, bos_token_id=EOS, lang_to_id=LANGS,
           task_to_id={"translate": 55, "transcribe": 56}, is_multilingual=True, no_timestamps_token_id=NOTS,
           max_initial_timestamp_index=5, suppress_tokens=SUPPRESS, begin_suppress_tokens=BEGIN, max_length=40)
STEPS = 12


def _config(source: int = SOURCE) -> dict:
    return dict(vocab_size=V, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=MELS,
                max_source_positions=source, max_target_positions=40, pad_token_id=EOS, bos_token_id=EOS,
                eos_token_id=EOS, decoder_start_token_id=START, init_std=0.2)


def _checkpoint(path, source: int = SOURCE):
    torch.manual_seed(0)
    transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(**_config(source))).save_pretrained(path)
    (path / "generation_config.json").write_text(json.dumps(GEN))
    return transformers.WhisperForConditionalGeneration.from_pretrained(path).eval(), llmarch.from_hf(path)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("whisper"))


def _features(seed: int = 1) -> torch.Tensor:
    return torch.randn(3, MELS, 2 * SOURCE, generator=torch.Generator().manual_seed(seed))


def _reference(ref, features, **kw) -> list[list[int]]:
    with torch.no_grad():
        out = ref.generate(features, max_new_tokens=STEPS, force_unique_generate_call=True,
                           return_dict_in_generate=True, **kw).sequences.tolist()
    return [row[:row.index(EOS, 1) + 1] if EOS in row[1:] else row for row in out]


CASES = [dict(), dict(language="fr"), dict(language="de", task="translate"), dict(task="translate"),
         dict(timestamps=True), dict(timestamps=True, language="en")]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()) or "detected")
@pytest.mark.parametrize("num_beams", [1, 3])
def test_transcription_equals_transformers(pair, case, num_beams):
    """Greedy and beam search from the decoder prompt the generation config builds (the language detected where none
    is given), under its suppressed tokens, and with timestamps under Whisper's timestamp rules."""
    ref, ours = pair
    kw = dict(case)
    timestamps = kw.pop("timestamps", False)
    for seed in (1, 2):
        features = _features(seed)
        expected = _reference(ref, features, return_timestamps=timestamps, num_beams=num_beams, **kw)
        assert transcribe(ours, features, STEPS, GEN, timestamps=timestamps, num_beams=num_beams, **kw) == expected


def test_the_rules_bind(pair):
    """Without the rules this model emits the suppressed ids, begins rows with the begin-suppressed ones, and under
    timestamps breaks the timestamp rules: each rule changes what the tests above compare."""
    _, ours = pair
    features = torch.cat([_features(1), _features(2)])
    free = transcribe(ours, features, STEPS, GEN, suppress=(), begin_suppress=())
    assert any(set(row[3:]) & set(SUPPRESS) for row in free) and any(row[3] in BEGIN for row in free)
    ruled = transcribe(ours, features, STEPS, GEN)
    assert not any(set(row[3:]) & set(SUPPRESS) or row[3] in BEGIN for row in ruled)
    assert free != ruled
    untimed = {k: v for k, v in GEN.items() if k != "no_timestamps_token_id"}  # the same prompt, no timestamp rules
    loose = transcribe(ours, features, STEPS, untimed)
    timed = transcribe(ours, features, STEPS, GEN, timestamps=True)
    # without the timestamp rules, first tokens are text or late timestamps; with them, a timestamp <= 0.10 s
    assert any(row[2] < NOTS + 1 or row[2] > NOTS + 6 for row in loose)
    assert all(NOTS < row[2] <= NOTS + 6 for row in timed)


def test_decoder_prompt_and_refusals():
    assert decoder_prompt(GEN, 0, "FR") == [START, 53, 56, NOTS]
    # by name, as transformers' generate takes it: English names and their aliases, any case
    assert decoder_prompt(GEN, 0, "French") == decoder_prompt(GEN, 0, "fr")
    assert decoder_prompt(GEN, 0, "GERMAN") == decoder_prompt(GEN, 0, "de") != decoder_prompt(GEN, 0, "english")
    assert decoder_prompt(GEN, 0, "<|de|>", "translate", timestamps=True) == [START, 54, 55]
    old = {**GEN, "forced_decoder_ids": [[1, None], [2, 55]]}
    assert decoder_prompt(old, 0, detected=52) == [START, 52, 55, NOTS]
    with pytest.raises(LlmarchError, match="not in the generation config's lang_to_id"):
        decoder_prompt(GEN, 0, "xx")
    with pytest.raises(LlmarchError, match="English-only"):
        decoder_prompt({**GEN, "is_multilingual": False}, 0, "en")
    with pytest.raises(LlmarchError, match="no_timestamps_token_id"):
        token_rules({}, timestamps=True)
    with pytest.raises(LlmarchError, match="beyond the vocabulary"):
        llmarch.generate(llmarch.build("llama-tiny", vocab_size=64, n_layers=1), [[1, 2]], 2,
                         rules=TokenRules(suppress=(64,)))


def test_language_names_are_transformers():
    """Whisper's language names and aliases map to the codes transformers' tokenizer maps them to."""
    from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

    from llmarch.generate.whisper_languages import LANGUAGES

    assert LANGUAGES == TO_LANGUAGE_CODE


def test_long_audio_refused(pair):
    with pytest.raises(LlmarchError, match="transcribe them with generate.longform.transcribe_long"):
        transcribe(pair[1], torch.zeros(1, MELS, 2 * SOURCE + 2), STEPS, GEN)


def test_suppression_in_any_models_generate(tmp_path):
    """suppress_tokens and begin_suppress_tokens on a decoder-only model, as transformers' general generate applies
    them (SuppressTokensLogitsProcessor, SuppressTokensAtBeginLogitsProcessor at the first new token), in greedy
    decoding and beam search; the suppressed ids are what this model generates without them."""
    torch.manual_seed(0)
    ref = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4,
                                                               n_positions=32, initializer_range=0.2)).eval()
    ref.save_pretrained(tmp_path)
    ours = llmarch.from_hf(tmp_path)
    prompt = torch.tensor([[5, 9, 3], [7, 7, 1]])
    free = llmarch.generate(ours, prompt, 8)[:, 3:]
    suppress, begin = [int(free[0, 3]), int(free[1, 5])], [int(free[0, 0]), int(free[1, 0])]
    rules = TokenRules(tuple(suppress), tuple(begin))
    for num_beams in (1, 3):
        with torch.no_grad():
            expected = ref.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=8,
                                    do_sample=False, num_beams=num_beams, suppress_tokens=suppress,
                                    begin_suppress_tokens=begin, pad_token_id=0, eos_token_id=None)
        got = llmarch.generate(ours, prompt, 8, num_beams=num_beams, rules=rules)
        assert got.tolist() == expected.tolist()
    assert not set(got[:, 3:].flatten().tolist()) & set(suppress) and not set(got[:, 3].tolist()) & set(begin)


def _tokenizer(path) -> None:
    """A word-level tokenizer.json over the ids above: words " w0".." w49" (each with its space, as Whisper's
    byte-level pieces), then the special tokens and the timestamps (added, not special, as Whisper's)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models

    tk = Tokenizer(models.WordLevel({f"\u2581w{i}": i for i in range(EOS)}, unk_token="\u2581w0"))
    tk.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.Fuse()])
    special = ["<|endoftext|>", "<|startoftranscript|>", *LANGS, "<|translate|>", "<|transcribe|>",
               "<|nospeech|>", "<|notimestamps|>"]
    tk.add_special_tokens([AddedToken(t, special=True) for t in special])
    tk.add_tokens([AddedToken(f"<|{0.02 * i:.2f}|>", special=False) for i in range(V - NOTS - 1)])
    assert tk.get_vocab_size() == V and tk.token_to_id("<|notimestamps|>") == NOTS
    tk.save(str(path / "tokenizer.json"))


def _wav(path, seconds: float, rate: int = 16000, channels: int = 1) -> None:
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(tone, channels).tobytes())


def test_cli_transcribes_a_wav(tmp_path, capsys):
    """`llmarch generate --audio` on a 1 s 440 Hz sine: the features of a 30 s window (a checkpoint of 1500 encoder
    positions), with --language and --timestamps: the transcription transformers' generate makes from
    WhisperFeatureExtractor's features, printed as its tokenizer decodes it (special tokens left out, timestamps in
    place; without --timestamps they are left out too: transcription_text). Other rates and channel counts are
    refused in one line (audio past 30 s is transcribed in windows: test_whisper_longform.py)."""
    from llmarch.cli import main

    ref, _ = _checkpoint(tmp_path, source=1500)
    _tokenizer(tmp_path)
    hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    _wav(tmp_path / "a.wav", 1.0)
    with wave.open(str(tmp_path / "a.wav")) as w:
        audio = np.frombuffer(w.readframes(w.getnframes()), "<i2") / 32768.0
    extractor = transformers.WhisperFeatureExtractor(feature_size=MELS)
    features = extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
    base = ["generate", "--checkpoint", str(tmp_path), "--audio", str(tmp_path / "a.wav"), "--temperature", "0",
            "--max-new-tokens", str(STEPS)]
    with torch.no_grad():
        row = ref.generate(features, max_new_tokens=STEPS, force_unique_generate_call=True, language="fr",
                           return_timestamps=True)[0].tolist()
    assert main([*base, "--language", "fr", "--timestamps"]) == 0
    assert capsys.readouterr().out == hf_tok.decode(row, skip_special_tokens=True) + "\n"
    assert any(t > NOTS for t in row) and any(t < EOS for t in row)  # timestamps and text
    assert main([*base[:5], "--max-new-tokens", "4", "--timestamps", "--num-beams", "2", "--temperature", "0.8"]) == 0
    assert capsys.readouterr().out.startswith("<|0.")  # beam search, greedy whatever --temperature says
    gen = read_generation_config(tmp_path)
    tok = llmarch.data.tokenizer.load_tokenizer(tmp_path)
    assert transcription_text(tok, [START, 3, NOTS + 3, 4, EOS], gen, True) == " w3<|0.04|> w4"
    assert transcription_text(tok, [START, 3, NOTS + 3, 4, EOS], gen) == " w3 w4"
    for args, reason in ((dict(seconds=1.0, rate=8000), "8000 Hz"), (dict(seconds=1.0, channels=2), "2 channel")):
        _wav(tmp_path / "b.wav", **args)
        assert main(base[:4] + [str(tmp_path / "b.wav")]) != 0
        err = capsys.readouterr().err
        assert reason in err and len(err.strip().splitlines()) == 1
