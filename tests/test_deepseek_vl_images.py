"""DeepSeek-VL's images from files (vision/square_images.py, prompts.py's LLaVA layout) against transformers:
pixel_values equal to DeepseekVLImageProcessorPil's (the longer side resized to the square size, min_size kept,
padded with the mean colour), input_ids equal to DeepseekVLProcessor's, and on a tiny random DeepSeek-VL saved by
transformers the greedy tokens of its generate, `llmarch generate --image`, `llmarch chat`'s /image and the server's
image_url part giving transformers' continuation; what the class cannot read refused in one line."""
import json

import numpy as np
import pytest
import torch

import llmarch
import llmarch.interop  # registers the families' image processors (DeepseekVLImageProcessor)
from conftest import saved_with_processor
from llmarch.data.tokenizer import load_tokenizer
from llmarch.errors import LlmarchError
from llmarch.vision.preprocess import processor_for
from llmarch.vision.prompts import image_request
from test_cli_trust import call
from test_internvl_images import cli_chat_and_server_match
from test_vision_images import tokenizer

transformers = pytest.importorskip("transformers")
Image = pytest.importorskip("PIL.Image")

LLAMA = dict(model_type="llama", hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=8)
SIGLIP = dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=48, num_hidden_layers=2,
              num_attention_heads=4, image_size=16, patch_size=4)
# DeepSeek-VL's chat template, shortened: each image part an <image_placeholder> before the text
TEMPLATE = ("{% for message in messages %}{{ message['role'].capitalize() + ': ' }}"
            "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
            "{% for c in message['content'] %}{% if c['type'] == 'image' %}{{ '<image_placeholder>' }}"
            "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}{{ '\n\n' }}"
            "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")
IMAGES = dict(size={"height": 16, "width": 16}, min_size=3)  # 16 features an image: 4 x 4 patches


def pil_images():
    """A wide RGB image, a very tall one (its width resized below min_size), a square one."""
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)) for shape in ((23, 57, 3), (50, 5, 3),
                                                                                       (9, 9, 3))]


@pytest.mark.parametrize("kwargs", [IMAGES, dict(IMAGES, resample=2, image_mean=[0.2, 0.9, 0.5], min_size=7),
                                    dict(IMAGES, do_convert_rgb=True), dict(IMAGES, do_pad=False, size=9)])
def test_pixel_values_are_the_image_processors(kwargs, tmp_path):
    hf = transformers.DeepseekVLImageProcessorPil(**kwargs)
    hf.save_pretrained(tmp_path)
    config = hf.to_dict()
    rng = np.random.default_rng(1)
    pil = pil_images() if kwargs.get("do_pad", True) else pil_images()[2:]
    if kwargs.get("do_convert_rgb"):  # RGBA composited onto white, grayscale widened
        pil += [Image.fromarray(rng.integers(0, 256, (41, 19, 4), dtype=np.uint8), "RGBA"),
                Image.fromarray(rng.integers(0, 256, (13, 29), dtype=np.uint8))]
    ours = processor_for(config)(pil)["pixel_values"]
    want = hf(pil, return_tensors="pt")["pixel_values"]
    assert ours.shape == want.shape and torch.equal(ours, want)


def test_what_the_image_processor_cannot_read_is_refused():
    config = dict(IMAGES, image_processor_type="DeepseekVLImageProcessor")
    rgba = Image.new("RGBA", (5, 7))
    with pytest.raises(LlmarchError, match="an image of mode RGBA, and the image processor does not convert to RGB"):
        processor_for(config)([rgba])
    with pytest.raises(LlmarchError, match="size .* must be a square"):
        processor_for(dict(config, size={"height": 16, "width": 8}))
    with pytest.raises(LlmarchError, match="min_size 0 must be a positive integer"):
        processor_for(dict(config, min_size=0))


@pytest.fixture(scope="module")
def deepseek_vl(tmp_path_factory):
    """A tiny random DeepSeek-VL saved by transformers with its DeepseekVLProcessor, and the processor."""
    path = tmp_path_factory.mktemp("deepseek_vl")
    tok = tokenizer(["<unk>", "<s>", "</s>", "<image_placeholder>"],
                    extra_special_tokens={"image_token": "<image_placeholder>"})
    tok.chat_template = TEMPLATE
    processor = transformers.DeepseekVLProcessor(image_processor=transformers.DeepseekVLImageProcessorPil(**IMAGES),
                                                 tokenizer=tok, num_image_tokens=16, chat_template=TEMPLATE)
    torch.manual_seed(0)
    conf = transformers.DeepseekVLConfig(text_config=dict(LLAMA, vocab_size=len(tok)), vision_config=SIGLIP,
                                         image_token_id=tok.convert_tokens_to_ids("<image_placeholder>"))
    hf = saved_with_processor(transformers.DeepseekVLForConditionalGeneration(conf), path, tok.eos_token_id,
                              processor)
    return path, hf, processor


def test_image_prompt_is_the_processors_and_generates_its_tokens(deepseek_vl):
    path, hf, processor = deepseek_vl
    model, tok = llmarch.load(path), load_tokenizer(path)
    pil = pil_images()
    prompt = "User: <image_placeholder>what is in <image_placeholder> and <image_placeholder>?\n\nAssistant:"
    ids, arguments = image_request(model, tok, prompt, pil)
    want = processor(images=pil, text=prompt, return_tensors="pt")
    assert list(arguments) == ["pixel_values"] and torch.equal(arguments["pixel_values"], want["pixel_values"])
    assert ids == want["input_ids"][0].tolist() and ids.count(model.vision.v.image_token_id) == 3 * 16
    expected = hf.generate(**want, max_new_tokens=5, do_sample=False)[0].tolist()
    assert llmarch.generate(model, [ids], 5, **arguments)[0] == expected
    with pytest.raises(LlmarchError, match="holds 1 <image_placeholder> token"):
        image_request(model, tok, "<image_placeholder> one", pil[:2])


def test_cli_generate_chat_and_server_with_an_image(deepseek_vl, tmp_path, capsys):
    path, hf, processor = deepseek_vl
    pil_images()[0].save(tmp_path / "cat.png")
    cli_chat_and_server_match(path, hf, processor, tmp_path / "cat.png",
                              "User: <image_placeholder>what is in the picture?\n\nAssistant:", capsys)


JANUS_SPECIAL = ["<unk>", "<s>", "</s>", "<image_placeholder>", "<begin_of_image>", "<end_of_image>"]
JANUS_NAMED = {"image_token": "<image_placeholder>", "boi_token": "<begin_of_image>", "eoi_token": "<end_of_image>"}


@pytest.fixture(scope="module")
def janus(tmp_path_factory):
    """A tiny random Janus saved by transformers with its JanusProcessor (the default system prompt on), and the
    processor."""
    path = tmp_path_factory.mktemp("janus")
    tok = tokenizer(JANUS_SPECIAL, extra_special_tokens=JANUS_NAMED)
    tok.chat_template = TEMPLATE
    processor = transformers.JanusProcessor(image_processor=transformers.JanusImageProcessorPil(**IMAGES),
                                            tokenizer=tok, num_image_tokens=16, chat_template=TEMPLATE,
                                            use_default_system_prompt=True)
    torch.manual_seed(0)
    conf = transformers.JanusConfig(
        text_config=dict(LLAMA, vocab_size=len(tok)), image_token_id=tok.convert_tokens_to_ids("<image_placeholder>"),
        vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, image_size=16, patch_size=4,
                           mlp_ratio=1.5, projection_dim=32),
        vq_config=dict(base_channels=32, channel_multiplier=[1, 1], num_res_blocks=1, latent_channels=32,
                       num_embeddings=16, embed_dim=4, projection_dim=32, image_token_embed_dim=32))
    hf = saved_with_processor(transformers.JanusForConditionalGeneration(conf), path, tok.eos_token_id, processor)
    return path, hf, processor


def test_janus_prompt_is_the_processors_and_generates_its_tokens(janus):
    """JanusProcessor's ids: the system prompt, each image as <begin_of_image>, its 16 tokens, <end_of_image>."""
    path, hf, processor = janus
    model, tok = llmarch.load(path), load_tokenizer(path)
    pil = pil_images()[:2]
    prompt = "User: <image_placeholder>what is in <image_placeholder>?\n\nAssistant:"
    ids, arguments = image_request(model, tok, prompt, pil)
    want = processor(images=pil, text=prompt, return_tensors="pt")
    assert torch.equal(arguments["pixel_values"], want["pixel_values"]) and ids == want["input_ids"][0].tolist()
    processor.use_default_system_prompt = False  # the saved processor has it on: the ids hold it
    assert len(processor(images=pil, text=prompt)["input_ids"][0]) < len(ids)
    processor.use_default_system_prompt = True
    expected = hf.generate(**want, max_new_tokens=5, do_sample=False)[0].tolist()
    assert llmarch.generate(model, [ids], 5, **arguments)[0] == expected
    # without image tokens, the images go first
    assert image_request(model, tok, "what?", pil[:1])[0] == image_request(model, tok, "<image_placeholder>what?",
                                                                            pil[:1])[0]


def test_janus_image_generation_is_refused(janus):
    path, _, _ = janus
    model, tok = llmarch.load(path), load_tokenizer(path)
    settings = json.loads(tok.side_files["processor_config.json"])
    tok.side_files = {**tok.side_files, "processor_config.json": json.dumps(dict(settings, generation_mode="image"))}
    with pytest.raises(LlmarchError, match="generation_mode 'image' .* not supported"):
        image_request(model, tok, "draw a cat like this one", pil_images()[:1])


def test_cli_generate_chat_and_server_with_a_janus_image(janus, tmp_path, capsys):
    path, hf, processor = janus
    pil_images()[1].save(tmp_path / "tall.png")
    cli_chat_and_server_match(path, hf, processor, tmp_path / "tall.png",
                              "User: <image_placeholder>what is in the picture?\n\nAssistant:", capsys)


def test_cli_refuses_an_image_the_processor_cannot_read_in_one_line(deepseek_vl, tmp_path, capsys):
    """DeepseekVLImageProcessor converts nothing to RGB (do_convert_rgb unset): an RGBA file is one line, exit 2."""
    Image.new("RGBA", (9, 7), (1, 2, 3, 4)).save(tmp_path / "clear.png")
    code, _, err = call(capsys, "generate", "--checkpoint", deepseek_vl[0], "--image", tmp_path / "clear.png",
                        "--prompt", "<image_placeholder>what?", "--max-new-tokens", "2")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "mode RGBA" in err, err
