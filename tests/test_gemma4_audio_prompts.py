"""Gemma 4's audio prompts from WAV files (data/usm_log_mel.py, audio/prompts.py's gemma4) against transformers:
input_features and input_features_mask equal bit for bit to Gemma4AudioFeatureExtractor's (clips of different
lengths, one past 30 s), input_ids equal to Gemma4Processor's; `llmarch generate --audio --prompt`, `llmarch chat`'s
/audio and the server's input_audio parts answer with transformers' greedy continuation. A tiny random checkpoint
with 16 mel bins. Gemma4Processor insists on a video processor, which needs torchvision (absent): the one here skips
that class check and is given none (its audio path never reads it)."""
import base64
import json

import pytest
import torch

import llmarch
from conftest import perturbed, trained_bpe
from llmarch.audio.prompts import audio_request
from llmarch.data.tokenizer import load_tokenizer
from llmarch.data.usm_log_mel import usm_features
from llmarch.data.wav import read_wav
from test_audio_prompts import clips
from test_cli_trust import call

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

SPECIAL = ["<pad>", "<eos>", "<bos>", "<unk>", "<|audio|>", "<boa>", "<eoa>", "<|image|>", "<boi>", "<eoi>",
           "<start_of_turn>", "<end_of_turn>"]
NAMED = {"audio_token": "<|audio|>", "boa_token": "<boa>", "eoa_token": "<eoa>", "image_token": "<|image|>",
         "boi_token": "<boi>", "eoi_token": "<eoi>"}
AUDIO, MELS = 4, 16
TEMPLATE = ("{% for m in messages %}<start_of_turn>{{ m.role }}\n{% if m.content is string %}{{ m.content }}{% else %}"
            "{% for c in m.content %}{% if c.type == 'audio' %}<|audio|>{% else %}{{ c.text }}{% endif %}{% endfor %}"
            "{% endif %}<end_of_turn>\n{% endfor %}<start_of_turn>model\n")
PROMPT = "<|audio|>what is the sound?"


class Processor(transformers.Gemma4Processor):
    def check_argument_for_proper_class(self, name, arg):  # the video processor's class needs torchvision
        return None


@pytest.fixture(scope="module")
def gemma4(tmp_path_factory):
    """(checkpoint path, transformers model, processor, wav paths)."""
    root = tmp_path_factory.mktemp("gemma4_audio")
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=trained_bpe(SPECIAL, "what is the sound? a dog barks in the rain"), bos_token="<bos>",
        eos_token="<end_of_turn>", pad_token="<pad>", unk_token="<unk>", extra_special_tokens=NAMED)
    tok.chat_template = TEMPLATE
    torch.manual_seed(0)
    conf = transformers.Gemma4Config(
        text_config=dict(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, head_dim=16, global_head_dim=16, intermediate_size=64,
                         hidden_size_per_layer_input=8, vocab_size_per_layer_input=300),
        audio_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, output_proj_dims=8,
                          subsampling_conv_channels=[MELS, 4]), vision_config=None, audio_token_id=AUDIO)
    hf = perturbed(transformers.Gemma4ForConditionalGeneration(conf))
    hf.generation_config.eos_token_id = tok.convert_tokens_to_ids("<end_of_turn>")  # where both stop
    extractor = transformers.Gemma4AudioFeatureExtractor(feature_size=MELS)
    hf.save_pretrained(root)
    tok.save_pretrained(root)
    extractor.save_pretrained(root)
    processor = Processor(feature_extractor=extractor, image_processor=None, tokenizer=tok, video_processor=None,
                          chat_template=TEMPLATE)
    return root, hf, processor, clips(root)  # 1.3, 0.55 and 31 s: the last cut to 30 s


def test_features_equal_the_feature_extractors_bit_for_bit(gemma4):
    path, _, processor, paths = gemma4
    samples = [read_wav(w) for w in paths]
    config = json.loads((path / "preprocessor_config.json").read_text())
    for group in (samples, samples[1:2], samples[:2]):
        theirs = processor.feature_extractor(group, return_tensors="pt")
        features, mask = usm_features(group, config)
        assert torch.equal(features, theirs["input_features"]) and torch.equal(mask, theirs["input_features_mask"])


def test_ids_and_features_are_the_processors(gemma4):
    path, _, processor, paths = gemma4
    model, tok = llmarch.load(path), load_tokenizer(path)
    samples = [read_wav(w) for w in paths]
    prompt = "clip <|audio|> and <|audio|> then <|audio|> what is the sound?"
    theirs = processor(text=prompt, audio=samples, return_tensors="pt")
    ids, arguments = audio_request(model, tok, prompt, samples)
    assert ids == theirs["input_ids"][0].tolist()
    assert torch.equal(arguments["input_features"], theirs["input_features"])
    assert torch.equal(arguments["feature_attention_mask"], theirs["input_features_mask"])
    bare, _ = audio_request(model, tok, "what is the sound?", samples[:1])  # the clip goes first
    assert bare == processor(text=PROMPT, audio=samples[:1], return_tensors="pt")["input_ids"][0].tolist()


def test_cli_generate_with_audio_prints_transformers_continuation(gemma4, capsys):
    path, hf, processor, paths = gemma4
    inputs = processor(text=PROMPT, audio=[read_wav(paths[0])], return_tensors="pt")
    inputs.pop("mm_token_type_ids")
    expected = processor.tokenizer.decode(hf.generate(**inputs, max_new_tokens=5, do_sample=False)[0],
                                          skip_special_tokens=True)
    code, out, err = call(capsys, "generate", "--checkpoint", path, "--audio", paths[0], "--prompt", PROMPT,
                          "--temperature", "0", "--max-new-tokens", "5", "--no-stream")
    assert code == 0 and out == expected + "\n", err


def chat_reply(hf, processor, messages, clips) -> str:
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=text, audio=clips, return_tensors="pt")
    inputs.pop("mm_token_type_ids")
    new = hf.generate(**inputs, max_new_tokens=5, do_sample=False,
                      eos_token_id=processor.tokenizer.eos_token_id)[0, inputs["input_ids"].shape[1]:]
    return processor.decode(new, skip_special_tokens=True)


def test_terminal_chat_with_a_clip(gemma4):
    from llmarch.serve.terminal import Conversation, chat_loop

    path, hf, processor, paths = gemma4
    messages = [{"role": "user", "content": [{"type": "audio", "audio_url": str(paths[1])},
                                             {"type": "text", "text": "what is the sound?"}]}]
    conversation = Conversation(llmarch.load(path), load_tokenizer(path), max_tokens=5, temperature=0)
    lines = iter([f"/audio {paths[1]}", "what is the sound?", "/exit"])
    chat_loop(conversation, lambda _: next(lines), lambda _: None)
    assert conversation.history[1]["content"] == chat_reply(hf, processor, messages, [read_wav(paths[1])])


def test_server_input_audio_part(gemma4):
    from starlette.testclient import TestClient

    from llmarch.serve.app import Server, build_app

    path, hf, processor, paths = gemma4
    clip = {"data": base64.b64encode(paths[0].read_bytes()).decode(), "format": "wav"}
    with TestClient(build_app(Server(llmarch.load(path), load_tokenizer(path), "tiny"))) as client:
        reply = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": clip}, {"type": "text", "text": "what is the sound?"}]}],
            "max_tokens": 5, "temperature": 0}).json()
    messages = [{"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": "what is the sound?"}]}]
    assert reply["choices"][0]["message"]["content"] == chat_reply(hf, processor, messages, [read_wav(paths[0])])
