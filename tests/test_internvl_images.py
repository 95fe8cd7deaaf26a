"""InternVL's images from files (vision/tiled_images.py, prompts.py's internvl layout) against transformers: input_ids
and pixel_values equal to InternVLProcessor's (each <IMG_CONTEXT> as <img>, a run per tile, </img>; crop_to_patches
forced on as the processor does) for prompts with and without image tokens, and on a tiny random InternVL saved by
transformers: the greedy tokens of its generate, `llmarch generate --image`, `llmarch chat`'s /image and the server's
image_url parts giving transformers' continuation of its chat prompt."""
import base64
import json

import numpy as np
import pytest
import torch

import llmarch
from conftest import saved_with_processor
from llmarch.data.tokenizer import load_tokenizer
from llmarch.errors import LlmarchError
from llmarch.vision.image_files import read_image
from llmarch.vision.prompts import image_request
from test_cli_trust import call
from test_vision_images import tokenizer

transformers = pytest.importorskip("transformers")
Image = pytest.importorskip("PIL.Image")

SPECIAL = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]
NAMED = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
         "video_token": "<video>"}
# InternVL 3's chat template, shortened: each image part an <IMG_CONTEXT> line before the text
TEMPLATE = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
            "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
            "{% for c in message['content'] %}{% if c['type'] == 'image' %}{{ '<IMG_CONTEXT>\n' }}"
            "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
            "{{ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
PER = 4  # tokens per tile: 16 patches of 4 x 4 pixels, shuffled by 2


class Processor(transformers.InternVLProcessor):
    """InternVLProcessor without its video processor (which needs torchvision, not installed here)."""

    def check_argument_for_proper_class(self, name, argument):
        return None if argument is None else super().check_argument_for_proper_class(name, argument)


def pil_images():
    """A wide RGB image (2 x 1 tiles and a thumbnail), a tall RGBA one (1 x 4 and a thumbnail), a small square one
    (one tile)."""
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (23, 57, 3), dtype=np.uint8)),
            Image.fromarray(rng.integers(0, 256, (50, 13, 4), dtype=np.uint8), "RGBA"),
            Image.fromarray(rng.integers(0, 256, (9, 11, 3), dtype=np.uint8))]


@pytest.fixture(scope="module")
def internvl(tmp_path_factory):
    """A tiny random InternVL checkpoint saved by transformers with its tokenizer and GotOcr2ImageProcessor (the
    processor's own config keeps crop_to_patches off, as published ones do), and the processor."""
    path = tmp_path_factory.mktemp("internvl")
    tok = tokenizer(SPECIAL, extra_special_tokens=NAMED)  # BOS too, which InternVL's Qwen tokenizer has not
    tok.chat_template = TEMPLATE
    image_processor = transformers.GotOcr2ImageProcessorPil(size={"height": 16, "width": 16}, max_patches=4)
    processor = Processor(image_processor=image_processor, tokenizer=tok, image_seq_length=PER,
                          chat_template=TEMPLATE)
    torch.manual_seed(0)
    conf = transformers.InternVLConfig(
        text_config=dict(model_type="qwen2", vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2),
        vision_config=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                           image_size=16, patch_size=4), image_token_id=tok.context_image_token_id)
    hf = saved_with_processor(transformers.InternVLForConditionalGeneration(conf), path, tok.eos_token_id, tok,
                              image_processor)
    return path, hf, processor


def test_image_prompt_is_the_processors_and_generates_its_tokens(internvl):
    path, hf, processor = internvl
    model, tok = llmarch.load(path), load_tokenizer(path)
    pil = pil_images()
    prompt = "user: <IMG_CONTEXT>\nwhat is in <IMG_CONTEXT> and <IMG_CONTEXT>?"
    ids, arguments = image_request(model, tok, prompt, pil)
    want = processor(images=pil, text=prompt, return_tensors="pt")
    assert want["pixel_values"].shape[0] == 3 + 5 + 1  # the tiles: crop_to_patches is on
    assert ids == want["input_ids"][0].tolist() and torch.equal(arguments["pixel_values"], want["pixel_values"])
    assert list(arguments) == ["pixel_values"]
    # without image tokens, each image goes first on its own line, as the chat template writes it
    assert image_request(model, tok, "what?", pil[:1])[0] == image_request(model, tok, "<IMG_CONTEXT>\nwhat?",
                                                                            pil[:1])[0]
    expected = hf.generate(**want, max_new_tokens=5, do_sample=False)[0].tolist()
    assert llmarch.generate(model, [ids], 5, **arguments)[0] == expected
    with pytest.raises(LlmarchError, match="holds 1 <IMG_CONTEXT> token"):
        image_request(model, tok, "<IMG_CONTEXT> one", pil[:2])


def test_the_image_tokens_and_processor_must_be_internvls(internvl, tmp_path):
    """A tokenizer_config.json without start_image_token, or another image processor: one line naming it."""
    path, _, _ = internvl
    model, tok = llmarch.load(path), load_tokenizer(path)
    side = tok.side_files
    tok.side_files = {**side, "preprocessor_config.json": b'{"image_processor_type": "SiglipImageProcessor"}'}
    with pytest.raises(LlmarchError, match="names another image processor"):
        image_request(model, tok, "what?", pil_images()[:1])
    tok.side_files = side
    config = json.loads(tok.side_files["tokenizer_config.json"])
    config.pop("extra_special_tokens", None)
    config.pop("start_image_token", None)
    tok.side_files = {**tok.side_files, "tokenizer_config.json": json.dumps(config).encode()}
    with pytest.raises(LlmarchError, match="names no start_image_token"):
        image_request(model, tok, "what?", pil_images()[:1])


def chat_expected(processor, hf, pil, n=5):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is in the picture?"}]}]
    inputs = processor(images=[pil], text=processor.apply_chat_template(messages, add_generation_prompt=True),
                       return_tensors="pt")
    new = hf.generate(**inputs, max_new_tokens=n, do_sample=False)[0, inputs["input_ids"].shape[1]:]
    return inputs, processor.decode(new, skip_special_tokens=True)


def test_cli_generate_chat_and_server_with_an_image(internvl, tmp_path, capsys):
    """`llmarch generate --image`, `llmarch chat`'s /image and the server's image_url part: transformers' greedy
    continuation of its processor's prompt."""
    path, hf, processor = internvl
    pil_images()[0].save(tmp_path / "cat.png")
    cli_chat_and_server_match(path, hf, processor, tmp_path / "cat.png", "user: <IMG_CONTEXT>\nwhat is in the picture?",
                              capsys)


def cli_chat_and_server_match(path, hf, processor, image_file, prompt: str, capsys) -> None:
    """On a checkpoint saved with its processor: `llmarch generate --image` on `prompt`, `llmarch chat`'s /image and
    the server's image_url part asking "what is in the picture?" each give transformers' greedy continuation of its
    processor's prompt (the chat template's, for the chat and the server)."""
    from starlette.testclient import TestClient

    from llmarch.serve.app import Server, build_app
    from llmarch.serve.terminal import Conversation, chat_loop

    inputs = processor(images=[read_image(image_file)], text=prompt, return_tensors="pt")
    expected = processor.tokenizer.decode(hf.generate(**inputs, max_new_tokens=4, do_sample=False)[0],
                                          skip_special_tokens=True)
    code, out, err = call(capsys, "generate", "--checkpoint", path, "--image", image_file, "--prompt",
                          prompt, "--temperature", "0", "--max-new-tokens", "4", "--no-stream")
    assert code == 0 and out == expected + "\n", err

    inputs, reply = chat_expected(processor, hf, read_image(image_file))
    conversation = Conversation(llmarch.load(path), load_tokenizer(path), max_tokens=5, temperature=0)
    lines = iter([f"/image {image_file}", "what is in the picture?", "/exit"])
    chat_loop(conversation, lambda _: next(lines), lambda _: None)
    assert conversation.history[1]["content"] == reply

    url = "data:image/png;base64," + base64.b64encode(image_file.read_bytes()).decode()
    asked = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                          {"type": "text", "text": "what is in the picture?"}]}]
    server = Server(llmarch.load(path), load_tokenizer(path), "vlm", max_batch=2)
    with TestClient(build_app(server)) as client:
        answer = client.post("/v1/chat/completions", json=dict(messages=asked, max_tokens=5, temperature=0)).json()
    assert answer["choices"][0]["message"]["content"] == reply
    assert answer["usage"]["prompt_tokens"] == inputs["input_ids"].shape[1]
