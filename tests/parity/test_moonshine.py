"""Moonshine (model_type moonshine) read from a tiny random MoonshineForConditionalGeneration's files: decoder logits
over a right-padded batch of two waveforms of different lengths within 1e-4 of transformers' (fp32), greedy decoding
equal to transformers' generate, cached decoding equal to the whole forward, a to_hf round trip that transformers
loads to the same logits, and `llmarch generate --audio` transcribing a WAV file as generate does. Every bias and
norm gain (the stem's GroupNorm included) is moved off its init. head_dim 16 with partial_rotary_factor 0.9: 14 of
each head's 16 dims rotated, in adjacent pairs, so a RoPE over whole heads or over halves would show."""
from __future__ import annotations

import wave

import numpy as np
import pytest
import torch

import llmarch
from llmarch.interop import FAMILIES, from_hf, to_hf
from conftest import seq2seq_pair
from test_seq2seq import _until_eos

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

V, START = 99, 1
_CONFIG = dict(vocab_size=V, hidden_size=64, intermediate_size=48, encoder_num_hidden_layers=2,
               decoder_num_hidden_layers=2, encoder_num_attention_heads=4, decoder_num_attention_heads=4,
               max_position_embeddings=32, pad_token_id=0, bos_token_id=START, eos_token_id=2,
               decoder_start_token_id=START, initializer_range=0.2)  # std 0.2: greedy tokens far from uniform


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    torch.manual_seed(0)
    ref = transformers.MoonshineForConditionalGeneration(transformers.MoonshineConfig(**_CONFIG))
    return seq2seq_pair("moonshine", ref, tmp_path_factory)


def _batch():
    """Two waveforms, 4,000 and 2,600 samples, the second right-padded with zeros: 9 encoder frames, 7 of the
    second's read (its mask at every 384th sample, as transformers downsamples it)."""
    g = torch.Generator().manual_seed(1)
    wav = torch.randn(2, 4000, generator=g)
    mask = torch.ones(2, 4000, dtype=torch.long)
    mask[1, 2600:], wav[1, 2600:] = 0, 0.0
    return wav, mask, torch.randint(3, V, (2, 6), generator=g)


def test_logits_over_a_padded_batch_and_round_trip(pair, tmp_path):
    _, ref, ours = pair
    assert type(ours).__name__ == "EncoderDecoderLM" and ours.config.encoder_input == "waveform_stem"
    wav, mask, tgt = _batch()
    with torch.no_grad():
        expected = ref(input_values=wav, attention_mask=mask, decoder_input_ids=tgt).logits
        got = ours(decoder_input_ids=tgt, input_features=wav[:, None], attention_mask=mask).logits
        unmasked = ours(decoder_input_ids=tgt, input_features=wav[:, None]).logits
    assert (expected - got).abs().max().item() <= 1e-4
    assert (unmasked[1] - got[1]).abs().max().item() > 1e-2  # the padded frames are masked, not read
    to_hf(ours, tmp_path)
    back = transformers.MoonshineForConditionalGeneration.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        again = back(input_values=wav, attention_mask=mask, decoder_input_ids=tgt).logits
    assert (again - got).abs().max().item() <= 1e-4
    cfg = ours.config
    assert from_hf(tmp_path).config.to_dict() == {**cfg.to_dict(), "name": cfg.name}


@pytest.mark.parametrize("num_beams", [1, 3])
def test_generate_matches_transformers(pair, num_beams):
    """llmarch.generate from a padded batch of waveforms returns transformers' generate's tokens, greedy with eos a
    token that row 0 emits early, and beam search with the config's eos (2), which row 1 emits at its last step, so
    that the rows end at different steps."""
    _, ref, ours = pair
    wav, mask, _ = _batch()
    kw = dict(attention_mask=mask, do_sample=False, max_new_tokens=8, decoder_start_token_id=START, pad_token_id=0)
    with torch.no_grad():
        eos = int(ref.generate(wav, eos_token_id=-1, **kw)[0, 2]) if num_beams == 1 else 2
        expected = ref.generate(wav, eos_token_id=eos, num_beams=num_beams, **kw)
    got = llmarch.generate(ours, None, 8, eos_id=eos, input_features=wav[:, None], attention_mask=mask,
                           num_beams=num_beams)
    rows = [_until_eos(r, eos) for r in got.tolist()]
    assert rows == [_until_eos(r, eos) for r in expected.tolist()]
    assert [len(r) for r in rows] == [3, 9] if num_beams == 1 else rows[1][-1] == eos != rows[0][-1]


def test_cached_decoding_equals_the_whole_forward(pair):
    _, _, ours = pair
    wav, mask, tgt = _batch()
    with torch.no_grad():
        whole = ours(decoder_input_ids=tgt, input_features=wav[:, None], attention_mask=mask).logits
        frames = ours.memory_mask(mask)
        assert frames.tolist() == [[1] * 9, [1] * 7 + [0] * 2]  # transformers' every 384th sample
        ours.setup_cache(2, tgt.shape[1], memory=ours.encode(input_features=wav[:, None], attention_mask=mask))
        try:
            steps = [ours.decode(tgt[:, i:i + 1], None, frames, input_pos=torch.tensor([i]), kv_len=i + 1).logits
                     for i in range(tgt.shape[1])]
        finally:
            ours.clear_cache()
    assert (torch.cat(steps, dim=1) - whole).abs().max().item() <= 1e-5


@pytest.mark.parametrize("change, message", [
    (dict(decoder_num_key_value_heads=2), r"key/value heads \(4, 2\) apart from the query heads"),
    (dict(encoder_num_attention_heads=2), r"different encoder and decoder head counts \(2, 4\)"),
    (dict(attention_bias=True), "attention biases"),
    (dict(rope_parameters={"rope_type": "linear", "factor": 2.0}), "rope type 'linear'"),
    (dict(architectures=["MoonshineModel"]), "MoonshineModel checkpoints"),
    (dict(decoder_hidden_act="tanh"), "decoder_hidden_act 'tanh' is not supported")])
def test_refused_configs(change, message):
    with pytest.raises(llmarch.LlmarchError, match=message):
        FAMILIES["moonshine"].to_config({**_CONFIG, "model_type": "moonshine", **change})


def test_refused_inputs(pair):
    _, _, ours = pair
    wav, mask, tgt = _batch()
    with pytest.raises(llmarch.LlmarchError, match=r"a waveform of shape \(batch, 1, samples\), at least 895"):
        ours(decoder_input_ids=tgt, input_features=wav[:, None, :800])
    with pytest.raises(llmarch.LlmarchError, match="reads one channel of samples"):
        llmarch.build("bart-tiny", encoder_input="waveform_stem", input_channels=2)
    whisper = llmarch.build("bart-tiny", encoder_input="conv_stem", input_channels=4, positions="none",
                            decoder_overrides={"positions": "learned"})
    with pytest.raises(llmarch.LlmarchError, match="reads every frame of its input_features: no attention_mask"):
        whisper(decoder_input_ids=tgt, input_features=torch.randn(2, 4, 2 * whisper.config.context_length),
                attention_mask=mask)


def _wav(path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((samples * 32767).astype("<i2").tobytes())


@pytest.mark.parametrize("normalize", [False, True])
def test_audio_features_equal_the_feature_extractor(normalize):
    """What --audio gives a waveform_stem model equals Wav2Vec2FeatureExtractor's input_values (Moonshine's
    processor), with and without do_normalize."""
    from llmarch.layers.encoder_inputs import WaveformStem

    samples = np.random.default_rng(0).standard_normal(5000).astype(np.float32) * 0.3 + 0.1
    fe = transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=normalize)
    expected = torch.as_tensor(fe(samples, sampling_rate=16000, return_tensors="np").input_values)
    cfg = llmarch.build("bart-tiny", encoder_input="waveform_stem", input_channels=1).config
    got = WaveformStem.audio_features(samples, cfg, {"do_normalize": normalize})
    assert got.shape == (1, 1, 5000) and (got[0] - expected).abs().max().item() <= 1e-5
    with pytest.raises(llmarch.LlmarchError, match="transcribes at most"):
        WaveformStem.audio_features(np.zeros(cfg.context_length * 384 + 1, np.float32), cfg, {})


def test_cli_transcribes_audio(pair, tmp_path, capsys):
    """`llmarch generate --audio x.wav` with a Moonshine checkpoint: the WAV file's samples as the waveform, decoded
    greedily to generate's tokens, printed as text."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from llmarch.cli import main

    _, _, ours = pair
    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(V)}, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    to_hf(ours, tmp_path / "ckpt")
    tok.save(str(tmp_path / "ckpt" / "tokenizer.json"))
    samples = np.sin(np.arange(6000) / 7.0).astype(np.float32) * 0.5
    _wav(tmp_path / "x.wav", samples)
    from llmarch.data.wav import read_wav

    wav = torch.as_tensor(read_wav(tmp_path / "x.wav"))[None, None]
    eos = ours.config.eos_id
    row = llmarch.generate(ours, None, 6, input_features=wav)[0].tolist()
    text = " ".join(f"w{t}" for t in row[1:row.index(eos, 1) if eos in row[1:] else None])
    args = ["generate", "--checkpoint", str(tmp_path / "ckpt"), "--temperature", "0", "--max-new-tokens", "6"]
    assert main(args + ["--audio", str(tmp_path / "x.wav")]) in (0, None)
    assert text and capsys.readouterr().out.splitlines() == [text]
    # the checkpoint's preprocessor_config.json (among its tokenizer's side files, which conversion keeps) asks for
    # normalisation: an llmarch checkpoint converted from the directory transcribes the normalised waveform
    (tmp_path / "ckpt" / "preprocessor_config.json").write_text('{"do_normalize": true}')
    assert main(["convert", "--from-hf", str(tmp_path / "ckpt"), "--out", str(tmp_path / "conv")]) in (0, None)
    normalised = (wav - wav.mean()) / torch.sqrt(wav.var(unbiased=False) + 1e-7)
    row = llmarch.generate(ours, None, 6, input_features=normalised)[0].tolist()
    text = " ".join(f"w{t}" for t in row[1:row.index(eos, 1) if eos in row[1:] else None])
    capsys.readouterr()
    args[2] = str(tmp_path / "conv")
    assert main(args + ["--audio", str(tmp_path / "x.wav")]) in (0, None)
    assert capsys.readouterr().out.splitlines() == [text]
    (tmp_path / "ckpt" / "preprocessor_config.json").write_text("{not json")  # one line, exit 2
    args[2] = str(tmp_path / "ckpt")
    assert main(args + ["--audio", str(tmp_path / "x.wav")]) == 2  # it raised json's traceback
    assert "cannot read the checkpoint's preprocessor_config.json" in capsys.readouterr().err
