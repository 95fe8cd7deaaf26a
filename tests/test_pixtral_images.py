"""Mistral 3's images from files (vision/pixtral_images.py, prompts.py's mistral3 layout) against transformers:
pixel_values and image_sizes equal to PixtralImageProcessorPil's under PixtralProcessor's merged patch (patch_size x
spatial_merge_size from processor_config.json), input_ids equal to PixtralProcessor's ([IMG] per merged patch,
[IMG_BREAK] after each row, [IMG_END] after the last) for prompts with and without image tokens; on a tiny random
Mistral3ForConditionalGeneration saved by transformers: the greedy tokens of its generate, `llmarch generate --image`,
`llmarch chat`'s /image and the server's image_url parts giving transformers' continuation."""
import json
import sys

import pytest
import torch

import llmarch
from conftest import saved_with_processor
from llmarch.data.tokenizer import load_tokenizer
from llmarch.errors import LlmarchError
from llmarch.vision.pixtral_images import PixtralImages
from llmarch.vision.prompts import image_request
from test_internvl_images import cli_chat_and_server_match
from test_vision_images import noise_images, tokenizer

transformers = pytest.importorskip("transformers")
Image = pytest.importorskip("PIL.Image")

SPECIAL = ["<unk>", "<s>", "</s>", "[IMG]", "[IMG_BREAK]", "[IMG_END]"]
# Mistral Small 3.1's chat template, shortened: an image part is [IMG] where it stands
TEMPLATE = ("{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST]' }}"
            "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for c in message['content'] %}"
            "{% if c['type'] == 'image' %}{{ '[IMG]' }}{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
            "{% endfor %}{% endif %}{{ '[/INST]' }}{% else %}{{ message['content'] + eos_token }}{% endif %}"
            "{% endfor %}")
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=8, sliding_window=None)
TOWER = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2, head_dim=16,
             patch_size=2, image_size=24, hidden_act="silu")


def pixtral_processor():
    """transformers' PixtralProcessor class: its module imports the torchvision image processor (not installed here)
    for get_resize_output_image_size alone, which the PIL module defines too; the stand-in is removed after."""
    from transformers.models.pixtral import image_processing_pil_pixtral as pil

    name = "transformers.models.pixtral.image_processing_pixtral"
    stand_in = name not in sys.modules
    sys.modules.setdefault(name, pil)
    try:
        from transformers.models.pixtral.processing_pixtral import PixtralProcessor
    finally:
        if stand_in:
            del sys.modules[name]
    return PixtralProcessor


def pil_images():
    """A wide RGB image scaled down to 8 x 24 (2 x 6 merged patches; its 8.8 rows of pixels floored, not rounded), a
    tall RGBA one to 24 x 8 (6 x 2), a small grayscale one rounded up to 12 x 12 (3 x 3)."""
    return noise_images((22, 60, 3), (50, 13, 4), (9, 11))


@pytest.fixture(scope="module")
def mistral3(tmp_path_factory):
    """A tiny random Mistral 3 saved by transformers with its PixtralProcessor (patches of 2, merged 2 x 2, images to
    a longest edge of 24), and the processor."""
    path = tmp_path_factory.mktemp("mistral3")
    tok = tokenizer(SPECIAL)
    tok.chat_template = TEMPLATE
    images = transformers.PixtralImageProcessorPil(size={"longest_edge": 24}, patch_size={"height": 2, "width": 2})
    processor = pixtral_processor()(image_processor=images, tokenizer=tok, patch_size=2, spatial_merge_size=2,
                                    chat_template=TEMPLATE)
    torch.manual_seed(0)
    conf = transformers.Mistral3Config(text_config=dict(TEXT, vocab_size=len(tok)), vision_config=TOWER,
                                       image_token_index=tok.convert_tokens_to_ids("[IMG]"),
                                       multimodal_projector_bias=True)
    hf = saved_with_processor(transformers.Mistral3ForConditionalGeneration(conf), path, tok.eos_token_id,
                              processor)
    return path, hf.eval(), processor


def test_image_prompt_is_the_processors_and_generates_its_tokens(mistral3):
    path, hf, processor = mistral3
    model, tok = llmarch.load(path), load_tokenizer(path)
    pil = pil_images()
    prompt = "[INST][IMG]what is in [IMG] and [IMG]?[/INST]"
    ids, arguments = image_request(model, tok, prompt, pil)
    want = processor(images=pil, text=prompt, return_tensors="pt")
    assert want["image_sizes"].tolist() == [[8, 24], [24, 8], [12, 12]]
    assert ids == want["input_ids"][0].tolist() and ids.count(3) == 12 + 12 + 9 and ids.count(4) == 1 + 5 + 2
    assert torch.equal(arguments["pixel_values"], want["pixel_values"])  # exactly: the same steps, the same padding
    assert torch.equal(arguments["image_sizes"], want["image_sizes"]) and list(arguments) == ["pixel_values",
                                                                                              "image_sizes"]
    expected = hf.generate(**want, max_new_tokens=5, do_sample=False)[0].tolist()
    assert llmarch.generate(model, [ids], 5, **arguments)[0] == expected
    # without image tokens, the images go first, as the chat template writes an image part before the text
    assert image_request(model, tok, "what?", pil[:2])[0] == image_request(model, tok, "[IMG][IMG]what?", pil[:2])[0]
    with pytest.raises(LlmarchError, match="holds 1 \\[IMG\\] token"):
        image_request(model, tok, "[IMG] one", pil[:2])


def test_processor_config_as_published_and_refusals(mistral3):
    """Published checkpoints keep the image processor in preprocessor_config.json and PixtralProcessor's fields in
    processor_config.json: read alike. A merged patch the model does not merge to, a crop: one line each."""
    path, _, processor = mistral3
    model, tok = llmarch.load(path), load_tokenizer(path)
    pil = pil_images()[:1]
    nested = json.loads(tok.side_files["processor_config.json"])
    image_processor = nested.pop("image_processor")
    want = image_request(model, tok, "[IMG]hi", pil)
    tok.side_files = {**tok.side_files, "processor_config.json": json.dumps(nested).encode(),
                      "preprocessor_config.json": json.dumps(image_processor).encode()}
    again = image_request(model, tok, "[IMG]hi", pil)
    assert again[0] == want[0] and torch.equal(again[1]["pixel_values"], want[1]["pixel_values"])
    tok.side_files["processor_config.json"] = json.dumps(dict(nested, spatial_merge_size=1)).encode()
    with pytest.raises(LlmarchError, match="spatial_merge_size 1; the model merges 2 x 2 patches of 2"):
        image_request(model, tok, "[IMG]hi", pil)
    with pytest.raises(LlmarchError, match="do_center_crop is not supported"):
        PixtralImages.from_config(dict(image_processor, do_center_crop=True))
    with pytest.raises(LlmarchError, match="longest_edge, or height and width"):
        PixtralImages.from_config(dict(image_processor, size={"shortest_edge": 8}))


def test_cli_generate_chat_and_server_with_an_image(mistral3, tmp_path, capsys):
    """`llmarch generate --image`, `llmarch chat`'s /image and the server's image_url part: transformers' greedy
    continuation of its processor's prompt."""
    path, hf, processor = mistral3
    pil_images()[1].save(tmp_path / "cat.png")
    prompt = "[INST][IMG]what is in the picture?[/INST]"
    cli_chat_and_server_match(path, hf, processor, tmp_path / "cat.png", prompt, capsys)
