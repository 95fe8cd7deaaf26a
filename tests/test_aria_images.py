"""Aria's images from files (vision/aria_images.py, interop/aria.py's layout) against transformers: pixel_values and
pixel masks equal to AriaImageProcessorPil's (whole images of odd sizes, min_image_size kept; split into crops of the
best split resolution, one that is no multiple of the crop too), input_ids and pixel_values equal to AriaProcessor's
(which calls its image processor at 980 pixels, unsplit, whatever its config says), and on a tiny random Aria saved
by transformers the greedy tokens of its generate, `llmarch generate --image`, `llmarch chat`'s /image and the
server's image_url part giving transformers' continuation."""
import numpy as np
import pytest
import torch

import llmarch
import llmarch.interop  # registers the families' image processors (AriaImageProcessor)
from conftest import saved_with_processor
from llmarch.data.tokenizer import load_tokenizer
from llmarch.errors import LlmarchError
from llmarch.vision.preprocess import processor_for
from llmarch.vision.prompts import image_request
from test_internvl_images import cli_chat_and_server_match
from test_vision_images import tokenizer

transformers = pytest.importorskip("transformers")
Image = pytest.importorskip("PIL.Image")

# Aria's chat template, shortened: each image part an <|img|> before the text
TEMPLATE = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
            "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
            "{% for c in message['content'] %}{% if c['type'] == 'image' %}{{ '<|img|>' }}"
            "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
            "{{ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def pil_images():
    """A wide RGB image, a tall RGBA one, a small one."""
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (300, 1200, 3), dtype=np.uint8)),
            Image.fromarray(rng.integers(0, 256, (700, 210, 4), dtype=np.uint8), "RGBA"),
            Image.fromarray(rng.integers(0, 256, (31, 17, 3), dtype=np.uint8))]


@pytest.mark.parametrize("kwargs", [dict(max_image_size=490, min_image_size=50),
                                    dict(max_image_size=490, min_image_size=400, resample=2),
                                    dict(max_image_size=490, min_image_size=50, split_image=True),
                                    dict(max_image_size=490, min_image_size=50, split_image=True,
                                         split_resolutions=[[490, 735], [735, 490]])])
def test_pixels_and_masks_are_the_image_processors(kwargs):
    hf = transformers.AriaImageProcessorPil(**kwargs)
    pil = pil_images()
    ours = processor_for(hf.to_dict())(pil)
    want = hf(pil, return_tensors="pt")
    assert torch.equal(ours["pixel_values"], want["pixel_values"])
    assert torch.equal(ours["pixel_attention_mask"], want["pixel_mask"])
    # whole images and crops cut short are padded; crops of a split resolution of whole crops are not
    assert bool(ours["pixel_attention_mask"].all()) == (kwargs.get("split_image", False)
                                                          and "split_resolutions" not in kwargs)


def test_what_the_image_processor_cannot_read_is_refused():
    with pytest.raises(LlmarchError, match="max_image_size 500 must be 490 or 980"):
        processor_for({"image_processor_type": "AriaImageProcessor", "max_image_size": 500})
    with pytest.raises(LlmarchError, match="min_image_size 0 must be"):
        processor_for({"image_processor_type": "AriaImageProcessor", "min_image_size": 0})


@pytest.fixture(scope="module")
def aria(tmp_path_factory):
    """A tiny random Aria (a 980-pixel tower of 70-pixel patches: 196 patches, 4 queries; 490 pixels: 2) saved by
    transformers with its AriaProcessor (an image processor saved at 490 pixels, split: the processor overrides
    both), and the processor."""
    path = tmp_path_factory.mktemp("aria")
    tok = tokenizer(["<unk>", "<s>", "</s>", "<|img|>", "<|im_start|>", "<|im_end|>"],
                    extra_special_tokens={"image_token": "<|img|>"})
    tok.chat_template = TEMPLATE
    image_processor = transformers.AriaImageProcessorPil(max_image_size=490, min_image_size=50, split_image=True)
    processor = transformers.AriaProcessor(image_processor=image_processor, tokenizer=tok,
                                           size_conversion={490: 2, 980: 4}, chat_template=TEMPLATE)
    torch.manual_seed(0)
    conf = transformers.AriaConfig(
        text_config=dict(model_type="aria_text", vocab_size=len(tok), hidden_size=32, intermediate_size=16,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, moe_num_experts=4,
                         moe_topk=2, moe_num_shared_experts=1),
        vision_config=dict(model_type="idefics3_vision", hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                           num_attention_heads=4, image_size=980, patch_size=70),
        image_token_index=tok.convert_tokens_to_ids("<|img|>"), projector_patch_to_query_dict={196: 4, 49: 2})
    hf = saved_with_processor(transformers.AriaForConditionalGeneration(conf), path, tok.eos_token_id, processor)
    return path, hf, processor


def test_image_prompt_is_the_processors_and_generates_its_tokens(aria):
    path, hf, processor = aria
    model, tok = llmarch.load(path), load_tokenizer(path)
    pil = pil_images()
    prompt = "<|im_start|>user\n<|img|>what is in <|img|> and <|img|>?<|im_end|>\n<|im_start|>assistant\n"
    ids, arguments = image_request(model, tok, prompt, pil)
    want = processor(images=pil, text=prompt, return_tensors="pt")
    assert want["pixel_values"].shape == (3, 3, 980, 980)  # AriaProcessor's 980 pixels, unsplit
    assert list(arguments) == ["pixel_values", "pixel_attention_mask"]
    assert torch.equal(arguments["pixel_values"], want["pixel_values"])
    assert torch.equal(arguments["pixel_attention_mask"], want["pixel_mask"])
    assert ids == want["input_ids"][0].tolist() and ids.count(model.vision.v.image_token_id) == 3 * 4
    expected = hf.generate(**want, max_new_tokens=5, do_sample=False)[0].tolist()
    assert llmarch.generate(model, [ids], 5, **arguments)[0] == expected
    assert image_request(model, tok, "what?", pil[:1])[0] == image_request(model, tok, "<|img|>what?", pil[:1])[0]


def test_cli_generate_chat_and_server_with_an_image(aria, tmp_path, capsys):
    path, hf, processor = aria
    pil_images()[0].save(tmp_path / "wide.png")
    cli_chat_and_server_match(path, hf, processor, tmp_path / "wide.png",
                              "<|im_start|>user\n<|img|>what is in the picture?<|im_end|>\n<|im_start|>assistant\n",
                              capsys)
