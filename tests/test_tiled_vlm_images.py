"""Aya Vision's images from files (vision/tiled_images.py's GotOcr2ImageProcessor tiles, tile_prompts.py's layout)
against transformers: pixel_values and input_ids equal to AyaVisionProcessor's (crop_to_patches forced on as it
does; each <image> as <|START_OF_IMG|>, TILE_k and the tile's <|IMG_PATCH|> run per tile, TILE_GLOBAL and the
thumbnail's, <|END_OF_IMG|>), and on a tiny random Aya Vision saved by transformers the greedy tokens of its
generate and `llmarch generate --image` giving transformers' continuation."""
import json

import pytest
import torch

import llmarch
from conftest import saved_with_processor
from llmarch.data.tokenizer import load_tokenizer
from llmarch.errors import LlmarchError
from llmarch.vision.image_files import read_image
from llmarch.vision.prompts import image_request
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


def test_aya_prompt_and_pixels_are_the_processors_and_generate_its_tokens(aya):
    path, hf, processor = aya
    model, tok = llmarch.load(path), load_tokenizer(path)
    pil = pil_images()
    prompt = "what is in <image>, <image> and <image>?"
    ids, arguments = image_request(model, tok, prompt, pil)
    want = processor(images=pil, text=prompt, return_tensors="pt")
    assert want["pixel_values"].shape[0] == 3 + 5 + 1  # the tiles and thumbnails: crop_to_patches is on
    assert list(arguments) == ["pixel_values"] and torch.equal(arguments["pixel_values"], want["pixel_values"])
    assert ids == want["input_ids"][0].tolist()
    assert image_request(model, tok, "what?", pil[:1])[0] == image_request(model, tok, "<image>what?", pil[:1])[0]
    expected = hf.generate(**want, max_new_tokens=5, do_sample=False)[0].tolist()
    assert llmarch.generate(model, [ids], 5, **arguments)[0] == expected
    with pytest.raises(LlmarchError, match="holds 1 <image> token"):
        image_request(model, tok, "<image> one", pil[:2])


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


def test_cli_generate_with_an_aya_image(aya, tmp_path, capsys):
    path, hf, processor = aya
    pil_images()[1].save(tmp_path / "tall.png")
    prompt = "<image>what is in the picture?"
    inputs = processor(images=[read_image(tmp_path / "tall.png")], text=prompt, return_tensors="pt")
    expected = processor.tokenizer.decode(hf.generate(**inputs, max_new_tokens=4, do_sample=False)[0],
                                          skip_special_tokens=True)
    code, out, err = call(capsys, "generate", "--checkpoint", path, "--image", tmp_path / "tall.png", "--prompt",
                          prompt, "--temperature", "0", "--max-new-tokens", "4", "--no-stream")
    assert code == 0 and out == expected + "\n", err
