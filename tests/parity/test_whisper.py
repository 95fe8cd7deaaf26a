"""Whisper (model_type whisper) read from a tiny random WhisperForConditionalGeneration's files: decoder logits for a
batch of random log-mel input_features within 1e-4 of transformers' (fp32), greedy decoding equal to a plain greedy
loop over transformers' forward (Whisper's own generate adds forced and suppressed tokens and timestamp rules from
its generation config), beam search equal to transformers' GenerationMixin.generate, cached decoding equal to the
whole forward, and a to_hf round trip that transformers loads to the same logits. Every bias and norm gain is moved
off its init, and the stored encoder sinusoids too, so that a table recomputed rather than read would show."""
from __future__ import annotations

import pytest
import torch

import llmarch
from llmarch.interop import FAMILIES, from_hf, to_hf
from conftest import seq2seq_pair
from test_seq2seq import _until_eos

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

V, MELS, SOURCE = 99, 8, 12  # SOURCE encoder positions: 2 * SOURCE frames
START = 3
_CONFIG = dict(vocab_size=V, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
               decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=MELS,
               max_source_positions=SOURCE, max_target_positions=20, pad_token_id=0, bos_token_id=1, eos_token_id=2,
               decoder_start_token_id=START, init_std=0.2)  # weights of std 0.2: greedy tokens far from uniform


def _moved_positions(ref) -> None:
    with torch.no_grad():
        ref.model.encoder.embed_positions.weight.add_(torch.randn_like(ref.model.encoder.embed_positions.weight) * 0.1)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    torch.manual_seed(0)
    ref = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(**_CONFIG))
    return seq2seq_pair("whisper", ref, tmp_path_factory, _moved_positions)


def _batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(3, MELS, 2 * SOURCE, generator=g), torch.randint(4, V, (3, 6), generator=g)


def test_logits_and_round_trip(pair, tmp_path):
    _, ref, ours = pair
    assert type(ours).__name__ == "EncoderDecoderLM" and ours.config.encoder_input == "conv_stem"
    features, tgt = _batch()
    with torch.no_grad():
        expected = ref(input_features=features, decoder_input_ids=tgt).logits
        got = ours(decoder_input_ids=tgt, input_features=features).logits
    assert (expected - got).abs().max().item() <= 1e-4
    to_hf(ours, tmp_path)
    back = transformers.WhisperForConditionalGeneration.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        again = back(input_features=features, decoder_input_ids=tgt).logits
    assert (again - got).abs().max().item() <= 1e-4
    cfg = ours.config
    assert from_hf(tmp_path).config.to_dict() == {**cfg.to_dict(), "name": cfg.name}


def test_stored_tables_read(pair):
    """The encoder's sinusoids as stored (moved here, so not recomputable), the keys' bias zero where Whisper has
    none, the head tied to the token embeddings."""
    _, ref, ours = pair
    assert torch.equal(ours.encoder_input.positions, ref.model.encoder.embed_positions.weight)
    d = ours.config.d_model
    assert not ours.encoder.blocks[0].attn.qkv_proj.bias[d:2 * d].any()
    assert not ours.decoder.blocks[1].cross_attn.kv_proj.bias[:d].any()
    assert ours.lm_head.weight is ours.embed.weight


def _greedy_loop(ref, features, prompt: list[int], steps: int) -> torch.Tensor:
    """transformers' forward, greedily: argmax of the last position's logits, the whole target re-read each step."""
    ids = torch.tensor([prompt] * features.shape[0])
    with torch.no_grad():
        for _ in range(steps):
            ids = torch.cat([ids, ref(input_features=features, decoder_input_ids=ids).logits[:, -1].argmax(-1, True)],
                            dim=1)
    return ids


@pytest.mark.parametrize("prompt", [[START], [START, 7, 9]])
def test_greedy_matches_a_greedy_loop(pair, prompt):
    """llmarch.generate from input_features returns the tokens of a plain greedy loop over transformers' forward,
    from the start token or from a decoder prompt (Whisper's language and task tokens), with eos a token that row 0
    emits early so that rows end at different steps."""
    _, ref, ours = pair
    features, _ = _batch()
    ids = _greedy_loop(ref, features, prompt, 8)
    P = len(prompt)
    eos = int(ids[0, P + 1])
    got = llmarch.generate(ours, None, 8, eos_id=eos, input_features=features,
                           decoder_prompt=prompt if P > 1 else None)
    for row, expected in zip(got.tolist(), ids.tolist()):
        end = expected.index(eos, P) + 1 if eos in expected[P:] else len(expected)
        assert row[:end] == expected[:end]
    assert len(set(map(tuple, ids.tolist()))) == 3  # the rows differ: the features reach the decoder


def test_beam_search_matches_transformers(pair):
    """Beam search from input_features returns transformers' sequences: its GenerationMixin.generate called on the
    Whisper model directly, past WhisperGenerationMixin's forced, suppressed and timestamp tokens."""
    _, ref, ours = pair
    features, _ = _batch()
    eos = int(_greedy_loop(ref, features, [START], 3)[1, 2])
    kw = dict(do_sample=False, decoder_start_token_id=START, pad_token_id=0, forced_bos_token_id=None,
              forced_eos_token_id=None, no_repeat_ngram_size=0, min_length=0, suppress_tokens=None,
              begin_suppress_tokens=None, num_beams=4, max_new_tokens=8, eos_token_id=eos)
    with torch.no_grad():
        expected = transformers.GenerationMixin.generate(ref, input_features=features, **kw)
    got = llmarch.generate(ours, None, 8, eos_id=eos, input_features=features, num_beams=4)
    assert [_until_eos(r, eos) for r in got.tolist()] == [_until_eos(r, eos) for r in expected.tolist()]


def test_cached_decoding_equals_the_whole_forward(pair):
    _, _, ours = pair
    features, tgt = _batch()
    with torch.no_grad():
        whole = ours(decoder_input_ids=tgt, input_features=features).logits
        ours.setup_cache(3, tgt.shape[1], memory=ours.encode(input_features=features))
        try:
            steps = [ours.decode(tgt[:, i:i + 1], None, input_pos=torch.tensor([i]), kv_len=i + 1).logits
                     for i in range(tgt.shape[1])]
        finally:
            ours.clear_cache()
    assert (torch.cat(steps, dim=1) - whole).abs().max().item() <= 1e-5


def test_refusals(pair):
    _, _, ours = pair
    features, tgt = _batch()
    with pytest.raises(llmarch.LlmarchError, match=r"input_features must have shape \(batch, 8, 24\)"):
        ours(decoder_input_ids=tgt, input_features=features[..., :20])
    with pytest.raises(llmarch.LlmarchError, match=r"reads input_features \(encoder_input"):
        ours(tgt, tgt)
    with pytest.raises(llmarch.LlmarchError, match="reads input_features"):
        llmarch.generate(ours, tgt, 4)
    bart = llmarch.build("bart-tiny", n_layers=1, n_decoder_layers=1)
    with pytest.raises(llmarch.LlmarchError, match="input_features are for an encoder front end"):
        bart(decoder_input_ids=tgt, input_features=features)
    with pytest.raises(llmarch.LlmarchError, match="reads input_ids, not input_features"):
        llmarch.generate(bart, None, 4, input_features=features)
    with pytest.raises(llmarch.LlmarchError, match="decoder_prompt is for encoder-decoders"):
        llmarch.generate(llmarch.build("gpt-tiny", n_layers=1), [[1, 2]], 2, decoder_prompt=[1])
    with pytest.raises(llmarch.LlmarchError, match="in place of decoder_start_id"):
        llmarch.generate(ours, None, 2, input_features=features, decoder_prompt=[START], decoder_start_id=START)
    with pytest.raises(llmarch.LlmarchError, match=r"decoder_prompt\[1\]=99 is out of range"):
        llmarch.generate(ours, None, 2, input_features=features, decoder_prompt=[START, V])
    whisper = FAMILIES["whisper"].to_config
    with pytest.raises(llmarch.LlmarchError, match="activation_function 'tanh' is not supported"):
        whisper({**_CONFIG, "model_type": "whisper", "activation_function": "tanh"})
    with pytest.raises(llmarch.LlmarchError, match="tie_word_embeddings false"):
        whisper({**_CONFIG, "model_type": "whisper", "tie_word_embeddings": False})
    with pytest.raises(llmarch.LlmarchError, match="WhisperForCausalLM checkpoints are not supported"):
        whisper({**_CONFIG, "model_type": "whisper", "architectures": ["WhisperForCausalLM"]})
    with pytest.raises(llmarch.LlmarchError, match="encoder_input='conv_stem' is an encoder-decoder's"):
        llmarch.build("gpt-tiny", encoder_input="conv_stem", input_channels=8, positions="none")
    with pytest.raises(llmarch.LlmarchError, match="unknown encoder_input 'fbank'; choose one of: tokens, conv_stem"):
        llmarch.build("bart-tiny", encoder_input="fbank")


def test_cli_reads_input_features(pair, tmp_path, capsys):
    """`llmarch generate --input-features` decodes a features file (.npy or .pt) as generate(input_features=...)
    does, each row's new tokens up to its end printed as text; --prompt and --input-features are one or the other."""
    import numpy as np
    from tokenizers import Tokenizer, models, pre_tokenizers

    from llmarch.cli import main

    _, _, ours = pair
    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(V)}, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    to_hf(ours, tmp_path / "ckpt")
    tok.save(str(tmp_path / "ckpt" / "tokenizer.json"))
    features, _ = _batch()
    np.save(tmp_path / "f.npy", features.numpy())
    torch.save(features[0], tmp_path / "f.pt")
    eos = ours.config.eos_id
    rows = llmarch.generate(ours, None, 5, input_features=features).tolist()
    texts = [" ".join(f"w{t}" for t in r[1:r.index(eos, 1) if eos in r[1:] else None]) for r in rows]
    args = ["generate", "--checkpoint", str(tmp_path / "ckpt"), "--temperature", "0", "--max-new-tokens", "5"]
    assert main(args + ["--input-features", str(tmp_path / "f.npy")]) in (0, None)
    out = capsys.readouterr().out.splitlines()
    assert all(texts) and out == [line for i, text in enumerate(texts) for line in (f"--- [{i}]", text)]
    assert main(args + ["--input-features", str(tmp_path / "f.pt")]) in (0, None)
    assert capsys.readouterr().out.splitlines() == [texts[0]]
    assert main(args + ["--input-features", str(tmp_path / "f.pt"), "--prompt", "w5"]) == 2
    assert "one of the three" in capsys.readouterr().err


@pytest.mark.parametrize("n_mels", [80, 128])
def test_log_mel_spectrogram_equals_the_feature_extractor(n_mels):
    """llmarch's log-mel features equal WhisperFeatureExtractor's (its torch path) bit for bit: a 3 s clip padded to
    30 s and a 40 s one cut, each row against its own maximum, 80 and 128 mel channels."""
    import numpy as np

    from llmarch.data.log_mel import log_mel_spectrogram

    rng = np.random.default_rng(0)
    audio = [rng.standard_normal(16000 * 3).astype(np.float32) * 0.1,
             np.sin(np.arange(16000 * 40) / 7.0).astype(np.float32)]
    extractor = transformers.WhisperFeatureExtractor(feature_size=n_mels)
    expected = extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
    got = torch.cat([log_mel_spectrogram(a, n_mels) for a in audio])
    assert got.shape == (2, n_mels, 3000) and torch.equal(got, expected)
    assert torch.equal(log_mel_spectrogram(np.stack([audio[0], audio[0]]), n_mels), expected[:1].expand(2, -1, -1))
