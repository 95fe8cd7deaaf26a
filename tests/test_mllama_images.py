"""Llama 3.2 Vision's images from files (src/llmarch/vision/mllama_images.py) against transformers: pixel_values,
aspect_ratio_ids and aspect_ratio_mask equal to MllamaImageProcessorPil's (two tile sizes and tile budgets, five
images of odd sizes and modes in one prompt: canvases downscaled to 8-pixel tiles and upscaled to 32-pixel ones, one
and several tiles, padded tiles),
exactly; input_ids equal to MllamaProcessor's (image tokens leading or inside the text, BOS written or not); and on a
tiny random MllamaForConditionalGeneration saved by transformers with its processor, `llmarch generate --image`,
`llmarch chat`'s /image and the server's image_url part giving transformers' greedy continuation."""
import base64
import json

import pytest
import torch

import llmarch
from conftest import perturbed
from llmarch.data.tokenizer import load_tokenizer
from llmarch.errors import LlmarchError
from llmarch.vision.image_files import read_image
from llmarch.vision.preprocess import processor_for
from llmarch.vision.prompts import image_request
from test_cli_trust import call
from test_vision_images import image_files, saved, tokenizer

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

IMAGE = "<|image|>"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return image_files(tmp_path_factory.mktemp("images"))


@pytest.mark.parametrize("kwargs", [dict(size={"height": 8, "width": 8}, max_image_tiles=4),
                                    dict(size={"height": 32, "width": 32}, max_image_tiles=3, resample=3,
                                         image_mean=[0.3, 0.4, 0.5], image_std=0.25)])
def test_processor_outputs_are_transformers(kwargs, images):
    hf = transformers.MllamaImageProcessorPil(**kwargs)
    config = json.loads(hf.to_json_string())
    pil = [read_image(p) for p in images]
    want = hf([pil], return_tensors="pt")
    ours = processor_for(config)(pil)
    assert set(ours) == {"pixel_values", "aspect_ratio_ids", "aspect_ratio_mask"}
    for name, got in ours.items():
        assert got.dtype == want[name].dtype and torch.equal(got, want[name]), name
    assert len(set(ours["aspect_ratio_ids"][0].tolist())) > 1  # several arrangements among the five


def test_processor_refusals():
    for bad in (dict(do_pad=False), dict(size={"height": 8, "width": 16}), dict(max_image_tiles=0)):
        with pytest.raises(LlmarchError, match="MllamaImageProcessor"):
            processor_for({"image_processor_type": "MllamaImageProcessor", **bad})


# Llama 3.2 Vision's chat template, shortened: BOS, each message's header, its image parts as <|image|>, its text
TEMPLATE = ("{{ bos_token }}{% for message in messages %}{{ message['role'] + ': ' }}"
            "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
            "{% for c in message['content'] %}{% if c['type'] == 'image' %}{{ '<|image|>' }}{% else %}{{ c['text'] }}"
            "{% endif %}{% endfor %}{% endif %}{{ '</s>' }}{% endfor %}"
            "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}")
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
            cross_attention_layers=[1], pad_token_id=0)
VISION = dict(hidden_size=32, num_hidden_layers=2, num_global_layers=1, attention_heads=2, intermediate_size=48,
              vision_output_dim=64, image_size=16, patch_size=8, max_num_tiles=2, intermediate_layers_indices=[0],
              supported_aspect_ratios=[[1, 1], [1, 2], [2, 1]])


@pytest.fixture(scope="module")
def mllama(tmp_path_factory):
    """A tiny random Llama 3.2 Vision checkpoint saved by transformers with its MllamaProcessor, and the processor."""
    path = tmp_path_factory.mktemp("mllama")
    tok = tokenizer(["<unk>", "<s>", "</s>", IMAGE])  # BOS <s> in front of every encoding, as Llama's
    processor = transformers.MllamaProcessor(
        image_processor=transformers.MllamaImageProcessorPil(size={"height": 16, "width": 16}, max_image_tiles=2),
        tokenizer=tok, chat_template=TEMPLATE)
    torch.manual_seed(0)
    hf = transformers.MllamaForConditionalGeneration(transformers.MllamaConfig(
        text_config=dict(vocab_size=len(tok), **TEXT), vision_config=VISION,
        image_token_index=tok.convert_tokens_to_ids(IMAGE)))
    perturbed(hf)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "gate" in name and p.numel() == 1:  # the tanh gates
                p.uniform_(0.6, 1.4)
    return saved(path, hf, processor)


PROMPT = "<|image|>what is in the picture?"


def test_prompt_ids_and_greedy_tokens_are_transformers(mllama, images):
    path, hf, processor = mllama
    model, tok = llmarch.load(path), load_tokenizer(path)
    pil = [read_image(images[0]), read_image(images[1])]
    for prompt in ("<|image|><|image|>what is in the picture?", "the cat <|image|> sat <|image|> on the mat",
                   "<s><|image|>the mat<|image|>"):
        want = processor(images=[pil], text=prompt, return_tensors="pt")
        ids, arguments = image_request(model, tok, prompt, pil)
        assert ids == want["input_ids"][0].tolist()
        assert all(torch.equal(arguments[k], want[k]) for k in arguments)
    expected = hf.generate(**want, max_new_tokens=6, do_sample=False)[0].tolist()
    assert llmarch.generate(model, [ids], 6, **arguments)[0] == expected
    # without image tokens, they go first (as the chat template writes an image part)
    assert image_request(model, tok, "what?", pil)[0] == image_request(model, tok, IMAGE * 2 + "what?", pil)[0]
    with pytest.raises(LlmarchError, match="holds 1 <|image|> token"):
        image_request(model, tok, "<|image|>one", pil)


def test_cli_generate_with_an_image(mllama, images, capsys):
    path, hf, processor = mllama
    inputs = processor(images=[read_image(images[4])], text=PROMPT, return_tensors="pt")
    expected = processor.tokenizer.decode(hf.generate(**inputs, max_new_tokens=6, do_sample=False)[0],
                                          skip_special_tokens=True)
    code, out, err = call(capsys, "generate", "--checkpoint", path, "--image", images[4], "--prompt", PROMPT,
                          "--temperature", "0", "--max-new-tokens", "6")
    assert code == 0 and out == expected + "\n", err
    code, _, err = call(capsys, "generate", "--checkpoint", path, "--image", images[4], "--prompt", IMAGE * 2 + "two?",
                        "--max-new-tokens", "2")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "holds 2 <|image|> token(s) for 1 image" in err, err


def chat_reply(hf, processor, pil, n=5):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is in the picture?"}]}]
    inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True,
                                           return_tensors="pt", images=[pil])
    new = hf.generate(**inputs, max_new_tokens=n, do_sample=False)[0, inputs["input_ids"].shape[1]:]
    return processor.decode(new, skip_special_tokens=True)


def test_terminal_chat_with_an_image(mllama, images):
    from llmarch.serve.terminal import Conversation, chat_loop

    path, hf, processor = mllama
    conversation = Conversation(llmarch.load(path), load_tokenizer(path), max_tokens=5, temperature=0)
    lines = iter([f"/image {images[3]}", "what is in the picture?", "/exit"])
    chat_loop(conversation, lambda _: next(lines), lambda _: None)
    assert conversation.history[1]["content"] == chat_reply(hf, processor, read_image(images[3]))


def test_server_chat_with_an_image(mllama, images):
    from starlette.testclient import TestClient

    from llmarch.serve.app import Server, build_app

    path, hf, processor = mllama
    url = "data:image/png;base64," + base64.b64encode(images[2].read_bytes()).decode()
    asked = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                          {"type": "text", "text": "what is in the picture?"}]}]
    server = Server(llmarch.load(path), load_tokenizer(path), "mllama", max_batch=2)
    with TestClient(build_app(server)) as client:
        reply = client.post("/v1/chat/completions", json={"messages": asked, "max_tokens": 5, "temperature": 0})
        text = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "the cat"}],
                                                         "max_tokens": 3, "temperature": 0})
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"] == chat_reply(hf, processor, read_image(images[2]))
    assert text.status_code == 200, text.text
