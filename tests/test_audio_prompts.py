"""Audio-language prompts from WAV files (audio/prompts.py) against transformers: Qwen2-Audio's input_ids,
input_features and feature_attention_mask equal to Qwen2AudioProcessor's for clips of different lengths (one past
30 s); `llmarch generate --audio --prompt` prints transformers' greedy continuation; Voxtral's input_features equal to
VoxtralProcessor's (audio padded to whole 30 s chunks), its ids in mistral-common's documented layout (mistral-common
is absent: not compared with it); refusals in one line. Tiny random checkpoints with 1500 encoder positions (the
processors always make 30 s clips) and 8 mel bins."""
import types
import wave

import numpy as np
import pytest
import torch

import llmarch
from conftest import perturbed, trained_bpe
from llmarch.audio.prompts import audio_request
from llmarch.data.tokenizer import load_tokenizer
from llmarch.data.wav import read_wav
from llmarch.errors import LlmarchError
from test_cli_trust import call

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

SPECIAL = ["<unk>", "<s>", "<|endoftext|>", "<|im_end|>", "<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>", "[INST]",
           "[/INST]", "[BEGIN_AUDIO]", "[AUDIO]"]
AUDIO, VOX_AUDIO = 5, 10  # <|AUDIO|>, [AUDIO]
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=300)
MELS = 8
SECONDS = [1.3, 0.5513, 31.0]  # the last past one 30 s window: Qwen2-Audio cuts it, Voxtral makes two chunks
PROMPT = "<|audio_bos|><|AUDIO|><|audio_eos|>what is the sound?"


def tokenizer():
    tk = trained_bpe(SPECIAL, "what is the sound? a dog barks in the rain")
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>", bos_token="<s>",
                                                pad_token="<|endoftext|>", unk_token="<unk>")


def clips(root) -> list:
    """Paths of WAV files of the SECONDS lengths: tones in noise, 16-bit PCM."""
    rng, paths = np.random.default_rng(0), []
    for k, s in enumerate(SECONDS):
        t = np.arange(int(s * 16000)) / 16000
        pcm = ((0.3 * np.sin(2 * np.pi * 300 * (k + 1) * t) + 0.05 * rng.standard_normal(len(t))) * 32767)
        with wave.open(str(root / f"{k}.wav"), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
            w.writeframes(pcm.astype("<i2").tobytes())
        paths.append(root / f"{k}.wav")
    return paths


@pytest.fixture(scope="module")
def qwen2_audio(tmp_path_factory):
    """(checkpoint path, transformers model, processor, wav paths)."""
    root = tmp_path_factory.mktemp("qwen2_audio")
    torch.manual_seed(0)
    conf = transformers.Qwen2AudioConfig(
        text_config={"model_type": "qwen2", **TEXT},
        audio_config=dict(model_type="qwen2_audio_encoder", d_model=16, encoder_layers=1, encoder_attention_heads=2,
                          encoder_ffn_dim=32, num_mel_bins=MELS), audio_token_index=AUDIO)
    hf = perturbed(transformers.Qwen2AudioForConditionalGeneration(conf))
    hf.generation_config.eos_token_id = None
    processor = transformers.Qwen2AudioProcessor(transformers.WhisperFeatureExtractor(feature_size=MELS), tokenizer())
    processor.tokenizer.chat_template = processor.chat_template  # its default template, for `llmarch chat`
    hf.save_pretrained(root)
    processor.save_pretrained(root)
    return root, hf, processor, clips(root)


def test_qwen2_audio_ids_and_features_are_the_processors(qwen2_audio):
    path, _, processor, wavs = qwen2_audio
    model, tok = llmarch.load(path), load_tokenizer(path)
    samples = [read_wav(w) for w in wavs]
    prompt = PROMPT.replace("<|audio_bos|>", "clip <|audio_bos|>", 1) + " and <|AUDIO|> then <|AUDIO|>"
    theirs = processor(text=prompt, audio=samples, return_tensors="pt")
    ids, arguments = audio_request(model, tok, prompt, samples)
    assert ids == theirs["input_ids"][0].tolist()
    assert torch.equal(arguments["input_features"], theirs["input_features"])
    assert torch.equal(arguments["feature_attention_mask"], theirs["feature_attention_mask"])
    # a prompt without audio tokens gets each clip at its start, as the base model's documented prompts write it
    bare, _ = audio_request(model, tok, "what is the sound?", samples[:1])
    assert bare == processor(text=PROMPT, audio=samples[:1], return_tensors="pt")["input_ids"][0].tolist()


def test_cli_generate_with_audio_prints_transformers_continuation(qwen2_audio, capsys):
    path, hf, processor, wavs = qwen2_audio
    inputs = processor(text=PROMPT, audio=[read_wav(wavs[0])], return_tensors="pt")
    expected = processor.tokenizer.decode(hf.generate(**inputs, max_new_tokens=5, do_sample=False)[0],
                                          skip_special_tokens=True)
    code, out, err = call(capsys, "generate", "--checkpoint", path, "--audio", wavs[0], "--prompt", PROMPT,
                          "--temperature", "0", "--max-new-tokens", "5", "--no-stream")
    assert code == 0 and out == expected + "\n", err


def test_terminal_chat_with_a_clip(qwen2_audio):
    """`llmarch chat`'s /audio: the reply is transformers' greedy continuation of its processor's chat prompt (the
    template's <|audio_bos|><|AUDIO|><|audio_eos|> expanded); a missing file is named without ending the chat."""
    from llmarch.serve.terminal import Conversation, chat_loop

    path, hf, processor, wavs = qwen2_audio
    messages = [{"role": "user", "content": [{"type": "audio", "audio_url": str(wavs[1])},
                                             {"type": "text", "text": "what is the sound?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=text, audio=[read_wav(wavs[1])], return_tensors="pt")
    new = hf.generate(**inputs, max_new_tokens=5, do_sample=False,
                      eos_token_id=processor.tokenizer.eos_token_id)[0, inputs["input_ids"].shape[1]:]
    conversation = Conversation(llmarch.load(path), load_tokenizer(path), max_tokens=5, temperature=0)
    lines = iter([f"/audio {wavs[1]}", "what is the sound?", "/audio nowhere.wav", "/exit"])
    shown = []
    chat_loop(conversation, lambda _: next(lines), shown.append)
    assert conversation.history[1]["content"] == processor.decode(new, skip_special_tokens=True)
    assert "(audio added to the next message)\n" in shown
    # the next turn's prompt, the clip with its message: the processor's ids and features of the same conversation
    messages.append({"role": "assistant", "content": conversation.history[1]["content"]})
    want = processor(text=processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False),
                     audio=[read_wav(wavs[1])], return_tensors="pt")
    ids, arguments = conversation.prompt()
    assert ids == want["input_ids"][0].tolist()
    assert torch.equal(arguments["input_features"], want["input_features"])
    assert any(s.startswith("(error:") and "nowhere.wav" in s for s in shown), shown


def test_audio_refusals_are_one_line(qwen2_audio, tmp_path, capsys):
    path, _, _, wavs = qwen2_audio
    (tmp_path / "notes.wav").write_text("not a wav")
    llmarch.to_hf(llmarch.build("llama-tiny", vocab_size=300, n_layers=1, d_model=32, n_heads=2, n_kv_heads=2,
                                hf_model_type="llama"), tmp_path / "text")
    load_tokenizer(path).save(tmp_path / "text")
    generate = ["generate", "--max-new-tokens", "2", "--prompt", PROMPT, "--checkpoint"]
    for argv, text in [((tmp_path / "text", wavs[0]), "reads no audio clips"),
                       ((path, tmp_path / "notes.wav"), "notes.wav"),
                       ((path, wavs[0], "--audio", wavs[1]), "holds 1 <|AUDIO|> token(s) for 2 clip(s)")]:
        code, _, err = call(capsys, *generate, argv[0], "--audio", *argv[1:])
        assert code == 2 and len(err.strip().splitlines()) == 1 and text in err, err
    code, _, err = call(capsys, "generate", "--checkpoint", path, "--audio", wavs[0])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "beside a --prompt" in err, err


def test_a_truncated_wav_is_named_as_such(tmp_path):
    """wave raises a bare EOFError for a file cut short: the one-line refusal still says why."""
    (tmp_path / "cut.wav").write_bytes(b"RIFF\x24\x00")
    with pytest.raises(LlmarchError, match=r"cut.wav as a PCM WAV file: it ends too soon \(truncated\)$"):
        read_wav(tmp_path / "cut.wav")


def test_voxtral_features_are_the_processors_and_ids_its_layout(tmp_path, capsys):
    torch.manual_seed(0)
    conf = transformers.VoxtralConfig(
        text_config={"model_type": "llama", **TEXT, "head_dim": 8},
        audio_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                          num_mel_bins=MELS), audio_token_id=VOX_AUDIO)
    hf = perturbed(transformers.VoxtralForConditionalGeneration(conf))
    hf.save_pretrained(tmp_path)
    tokenizer().save_pretrained(tmp_path)
    model, tok = llmarch.load(tmp_path), load_tokenizer(tmp_path)
    samples = [read_wav(w) for w in clips(tmp_path)]
    ids, arguments = audio_request(model, tok, "what is the sound?", [samples[0], samples[2]])
    extractor = types.SimpleNamespace(feature_extractor=transformers.WhisperFeatureExtractor(feature_size=MELS))
    kwargs = dict(sampling_rate=16000, padding=True, truncation=False, pad_to_multiple_of=480000, return_tensors="pt")
    theirs = transformers.VoxtralProcessor._retrieve_input_features(extractor, [samples[0], samples[2]], 3000,
                                                                    **kwargs)
    assert arguments["input_features"].shape == (3, MELS, 3000)
    assert torch.equal(arguments["input_features"], theirs)
    special = {t: tok.encode_offsets(t)[0][0] for t in ("<s>", "[INST]", "[/INST]", "[BEGIN_AUDIO]")}
    text = [i for i, _ in tok.encode_offsets("what is the sound?")]
    assert ids == [special["<s>"], special["[INST]"], special["[BEGIN_AUDIO]"], *[VOX_AUDIO] * 375,
                   special["[BEGIN_AUDIO]"], *[VOX_AUDIO] * 750, *text, special["[/INST]"]]
    # `llmarch generate` prints the prompt and transformers' greedy continuation of those ids and features
    sequence = hf.generate(input_ids=torch.tensor([ids]), max_new_tokens=4, do_sample=False, **arguments)[0]
    code, out, err = call(capsys, "generate", "--checkpoint", tmp_path, "--audio", clips(tmp_path)[0], "--audio",
                          clips(tmp_path)[2], "--prompt", "what is the sound?", "--temperature", "0",
                          "--max-new-tokens", "4", "--no-stream")
    assert code == 0 and out == tok.decode(t for t in sequence.tolist() if t not in tok.eos_ids) + "\n", err


def test_info_names_the_audio_tower(qwen2_audio, capsys):
    code, out, err = call(capsys, "info", qwen2_audio[0])
    assert code == 0, err
    assert "audio: 1-layer Whisper encoder, width 16, 8 mel bins, clips of 3000 frames, up to 750 tokens each" in out
