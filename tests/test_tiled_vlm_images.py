"""Aya Vision's and Cohere2 Vision's images from files against transformers. Aya (vision/tiled_images.py's
GotOcr2ImageProcessor tiles, tile_prompts.py's layout): pixel_values and input_ids equal to AyaVisionProcessor's
(crop_to_patches forced on as it does; each <image> as <|START_OF_IMG|>, TILE_k and the tile's <|IMG_PATCH|> run per
tile, TILE_GLOBAL and the thumbnail's, <|END_OF_IMG|>), and on a tiny random Aya Vision saved by transformers the
greedy tokens of its generate and `llmarch generate --image` giving transformers' continuation. Cohere2 Vision
(vision/cohere2_images.py): transformers has its image processor only for torchvision, which is not installed
here; where it is, pixel_values and input_ids are compared with Cohere2VisionProcessor's, and everywhere with the
digests of what that processor gave (transformers 5.25, torchvision 0.28) on the same images and prompt."""
import hashlib
import json

import pytest
import torch

import llmarch
from conftest import saved_with_processor
from llmarch.data.tokenizer import load_tokenizer
from llmarch.errors import LlmarchError
from llmarch.vision.cohere2_images import canvas_grid
from llmarch.vision.image_files import read_image
from llmarch.vision.prompts import chat_request, image_request
from test_cli_trust import call
from test_internvl_images import pil_images
from test_vision_images import tokenizer

transformers = pytest.importorskip("transformers")

AYA_SPECIAL = ["<unk>", "<s>", "</s>", "<|START_OF_IMG|>", "<|END_OF_IMG|>", "<|IMG_PATCH|>", "<|IMG_LINE_BREAK|>"]
COHERE2 = dict(model_type="cohere2", hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, head_dim=8, sliding_window=6, logit_scale=0.5)
SIGLIP = dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=48, num_hidden_layers=2,
              num_attention_heads=4, image_size=16, patch_size=4, vision_use_head=False)


@pytest.fixture(scope="module")
def aya(tmp_path_factory):
    """A tiny random Aya Vision (16-pixel tiles of 4 x 4 patches, shuffled by 2: 4 tokens a tile) saved by
    transformers with AyaVisionProcessor (GotOcr2ImageProcessor of at most 4 tiles), and the processor."""
    path = tmp_path_factory.mktemp("aya")
    tok = tokenizer(AYA_SPECIAL, pad_token="<unk>")  # the processor pads (to the left)
    image_processor = transformers.GotOcr2ImageProcessorPil(size={"height": 16, "width": 16}, max_patches=4)
    processor = transformers.AyaVisionProcessor(image_processor=image_processor, tokenizer=tok, patch_size=4,
                                                img_size=16, downsample_factor=2)
    torch.manual_seed(0)
    conf = transformers.AyaVisionConfig(text_config=dict(COHERE2, vocab_size=len(tok)), vision_config=SIGLIP,
                                        image_token_index=tok.convert_tokens_to_ids("<|IMG_PATCH|>"),
                                        alignment_intermediate_size=48, adapter_layer_norm_eps=1e-4)
    hf = saved_with_processor(transformers.AyaVisionForConditionalGeneration(conf), path, tok.eos_token_id,
                              processor)
    return path, hf, processor


def ours_and_theirs(path, processor, prompt: str, pil: list):
    """llmarch's checkpoint at `path` and tokenizer, its (ids, image arguments) and transformers' processor's
    inputs for one prompt about the images."""
    model, tok = llmarch.load(path), load_tokenizer(path)
    return model, tok, image_request(model, tok, prompt, pil), processor(images=pil, text=prompt, return_tensors="pt")


def test_aya_prompt_and_pixels_are_the_processors_and_generate_its_tokens(aya):
    path, hf, processor = aya
    model, tok, (ids, arguments), want = ours_and_theirs(path, processor, "what is in <image>, <image> and <image>?",
                                                         pil := pil_images())
    assert want["pixel_values"].shape[0] == 3 + 5 + 1  # the tiles and thumbnails: crop_to_patches is on
    assert list(arguments) == ["pixel_values"] and torch.equal(arguments["pixel_values"], want["pixel_values"])
    assert ids == want["input_ids"][0].tolist()
    assert image_request(model, tok, "what?", pil[:1])[0] == image_request(model, tok, "<image>what?", pil[:1])[0]
    expected = hf.generate(**want, max_new_tokens=5, do_sample=False)[0].tolist()
    assert llmarch.generate(model, [ids], 5, **arguments)[0] == expected
    with pytest.raises(LlmarchError, match="holds 1 <image> token"):
        image_request(model, tok, "<image> one", pil[:2])


def test_aya_chat_places_images_at_its_placeholder(aya):
    """A rendered chat holds processor_config.json's <image> once per image (the server's chat_request): the ids
    are the processor's on that text."""
    path, _, processor = aya
    text = "USER: <image>what is in the picture? ASSISTANT:"
    model, tok, _, want = ours_and_theirs(path, processor, text, pil_images()[:1])
    assert chat_request(model, tok, text, pil_images()[:1])[0] == want["input_ids"][0].tolist()


def test_aya_settings_must_agree_with_the_model(aya):
    """processor_config.json's img_patch_token must be the model's image token; another image processor is
    refused."""
    path, _, _ = aya
    model, tok = llmarch.load(path), load_tokenizer(path)
    config = json.loads(tok.side_files["processor_config.json"])
    tok.side_files = {**tok.side_files, "processor_config.json": json.dumps(
        {**config, "img_patch_token": "<|IMG_LINE_BREAK|>"}).encode()}
    with pytest.raises(LlmarchError, match="img_patch_token <.IMG_LINE_BREAK.> is not the model's image token"):
        image_request(model, tok, "what?", pil_images()[:1])
    tok.side_files = {**tok.side_files, "processor_config.json": json.dumps(dict(config, image_processor={
        "image_processor_type": "SiglipImageProcessor"})).encode()}
    with pytest.raises(LlmarchError, match="names another image processor"):
        image_request(model, tok, "what?", pil_images()[:1])


def generate_prints(capsys, path, image, prompt: str, expected: str) -> None:
    """`llmarch generate --image` greedy for 4 tokens prints `expected` (transformers' continuation, decoded)."""
    code, out, err = call(capsys, "generate", "--checkpoint", path, "--image", image, "--prompt", prompt,
                          "--temperature", "0", "--max-new-tokens", "4", "--no-stream")
    assert code == 0 and out == expected + "\n", err


def test_cli_generate_with_an_aya_image(aya, tmp_path, capsys):
    path, hf, processor = aya
    pil_images()[1].save(tmp_path / "tall.png")
    prompt = "<image>what is in the picture?"
    inputs = processor(images=[read_image(tmp_path / "tall.png")], text=prompt, return_tensors="pt")
    out = hf.generate(**inputs, max_new_tokens=4, do_sample=False)[0]
    generate_prints(capsys, path, tmp_path / "tall.png", prompt, processor.tokenizer.decode(out,
                                                                                            skip_special_tokens=True))


COHERE2_SPECIAL = AYA_SPECIAL
NAMED = {"boi_token": "<|START_OF_IMG|>", "eoi_token": "<|END_OF_IMG|>", "image_token": "<|IMG_PATCH|>",
         "img_line_break_token": "<|IMG_LINE_BREAK|>"}
# Cohere2VisionImageProcessor as its processor saves it: 24-pixel tiles of 6 x 6 patches shuffled by 3 (patch_size
# 2: 4 tokens a tile), at most 4 tiles
COHERE2_IMAGES = dict(image_processor_type="Cohere2VisionImageProcessor", crop_to_patches=True, do_convert_rgb=True,
                      do_normalize=True, do_rescale=True, do_resize=True,
                      image_mean=[0.48145466, 0.4578275, 0.40821073],
                      image_std=[0.26862954, 0.26130258, 0.27577711], max_patches=4, min_patches=1, patch_size=2,
                      resample=3, rescale_factor=1 / 255, size={"height": 24, "width": 24})
PROMPT = "what is in <|IMG_PATCH|>, <|IMG_PATCH|> and <|IMG_PATCH|>?"
# sha256 of Cohere2VisionProcessor's pixel_values (float32 bytes, (9, 3, 24, 24)) and of str(input_ids) on
# pil_images() and PROMPT (transformers 5.25, torchvision 0.28)
PIXELS_SHA = "16ad33b865762dfbcc76e8552715f290b869203e6b07b1df95b97de055fc913f"
IDS_SHA = "3bb7aa4fe8db0a3935ae5ccb7bf64b94181200b2b3f0b49d3d17fb31ecbb9fb2"


@pytest.fixture(scope="module")
def cohere2(tmp_path_factory):
    """A tiny random Cohere2 Vision saved by transformers with its tokenizer (the image tokens named as
    Cohere2VisionProcessor reads them) and processor_config.json."""
    path = tmp_path_factory.mktemp("cohere2_vision")
    tok = tokenizer(COHERE2_SPECIAL, pad_token="<unk>", extra_special_tokens=NAMED)
    torch.manual_seed(0)
    conf = transformers.Cohere2VisionConfig(
        text_config=dict(COHERE2, vocab_size=len(tok)), vision_config=dict(SIGLIP, image_size=24),
        image_token_id=tok.convert_tokens_to_ids("<|IMG_PATCH|>"), downsample_factor=3, alignment_intermediate_size=48)
    hf = saved_with_processor(transformers.Cohere2VisionForConditionalGeneration(conf), path, tok.eos_token_id, tok)
    (path / "processor_config.json").write_text(json.dumps({"image_processor": COHERE2_IMAGES,
                                                            "processor_class": "Cohere2VisionProcessor"}))
    return path, hf, tok


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_cohere2_prompt_and_pixels_are_the_processors(cohere2):
    path, hf, hf_tok = cohere2
    model, tok = llmarch.load(path), load_tokenizer(path)
    ids, arguments = image_request(model, tok, PROMPT, pil_images())
    assert list(arguments) == ["pixel_values"] and arguments["pixel_values"].shape == (3 + 5 + 1, 3, 24, 24)
    assert sha(arguments["pixel_values"].numpy().tobytes()) == PIXELS_SHA and sha(str(ids).encode()) == IDS_SHA
    marks = hf_tok.convert_tokens_to_ids(["<|START_OF_IMG|>", "<|END_OF_IMG|>", "<|IMG_LINE_BREAK|>"])
    assert [ids.count(m) for m in marks] == [3, 3, 9] and ids.count(model.vision.v.image_token_id) == 9 * 4
    assert image_request(model, tok, "what?", pil_images()[:1])[0] == image_request(
        model, tok, "<|IMG_PATCH|>what?", pil_images()[:1])[0]
    expected = hf.generate(input_ids=torch.tensor([ids]), pixel_values=arguments["pixel_values"], max_new_tokens=5,
                           do_sample=False)[0].tolist()
    assert llmarch.generate(model, [ids], 5, **arguments)[0] == expected


# (height, width) -> (cols, rows): transformers' Cohere2 get_optimal_tiled_canvas with 24-pixel tiles, at most 4
# (images to upscale, and to downscale whatever the grid: (100, 130) and the rest past 96 pixels)
CANVAS = {(23, 57): (3, 1), (50, 13): (1, 3), (9, 11): (1, 1), (24, 24): (1, 1), (24, 48): (2, 1), (100, 130): (2, 2),
          (130, 100): (2, 2), (300, 40): (1, 4), (49, 49): (2, 2), (60, 20): (1, 3), (47, 95): (3, 1), (97, 25): (1, 4)}


def test_cohere2_canvas_is_transformers():
    assert {size: canvas_grid(*size, 24, 4) for size in CANVAS} == CANVAS


def test_cohere2_against_transformers_processor(cohere2):
    """Where torchvision is installed: transformers' own Cohere2VisionProcessor, on more images and settings."""
    pytest.importorskip("torchvision")
    path, _, tok = cohere2
    processor = transformers.Cohere2VisionProcessor(
        image_processor=transformers.Cohere2VisionImageProcessor(**COHERE2_IMAGES), tokenizer=tok)
    _, _, (ids, arguments), want = ours_and_theirs(path, processor, PROMPT, pil_images())
    assert ids == want["input_ids"][0].tolist() and torch.equal(arguments["pixel_values"], want["pixel_values"])


def test_cli_generate_with_a_cohere2_image(cohere2, tmp_path, capsys):
    path, hf, tok = cohere2
    pil_images()[0].save(tmp_path / "wide.png")
    ids, arguments = image_request(llmarch.load(path), load_tokenizer(path), "<|IMG_PATCH|>what is in the picture?",
                                   [read_image(tmp_path / "wide.png")])
    out = hf.generate(input_ids=torch.tensor([ids]), pixel_values=arguments["pixel_values"], max_new_tokens=4,
                      do_sample=False)[0]
    generate_prints(capsys, path, tmp_path / "wide.png", "<|IMG_PATCH|>what is in the picture?",
                    tok.decode(out, skip_special_tokens=True))
