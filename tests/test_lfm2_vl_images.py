"""LFM2-VL's images from files (vision/lfm2_images.py, tile_prompts.py's layout) against transformers: its
Lfm2VlImageProcessor exists only for torchvision, which is not installed here; where it is, pixel_values,
image_sizes (spatial_shapes x patch) and input_ids are compared with Lfm2VlProcessor's, and everywhere with the
digests of what that processor gave (transformers 5.25, torchvision 0.28) on the same RGB images (a wide one split
2 x 1 with a thumbnail, a small one upscaled whole, one split 2 x 2) and prompt; and on a tiny random LFM2-VL saved
by transformers the greedy tokens of its generate and `llmarch generate --image`."""
import json

import numpy as np
import pytest
import torch

import llmarch
from conftest import saved_with_processor
from llmarch.data.tokenizer import load_tokenizer
from llmarch.vision.image_files import read_image
from llmarch.vision.prompts import image_request
from test_tiled_vlm_images import generate_prints, ours_and_theirs, sha
from test_vision_images import tokenizer

transformers = pytest.importorskip("transformers")
Image = pytest.importorskip("PIL.Image")

SPECIAL = ["<unk>", "<s>", "</s>", "<image>", "<|image_start|>", "<|image_end|>", "<|img_thumbnail|>"]
LFM2 = dict(model_type="lfm2", hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, full_attn_idxs=[1], block_multiple_of=16)
SIGLIP2 = dict(model_type="siglip2_vision_model", hidden_size=32, intermediate_size=48, num_hidden_layers=2,
               num_attention_heads=4, patch_size=4, vision_use_head=False, num_patches=16)
# Lfm2VlImageProcessor as its processor saves it: 16-pixel tiles of 4-pixel patches, 2 to 8 tokens an image
IMAGES = {"do_image_splitting": True, "do_normalize": True, "do_pad": True, "do_rescale": True, "do_resize": True,
          "downsample_factor": 2, "encoder_patch_size": 4, "image_mean": [0.5, 0.5, 0.5],
          "image_processor_type": "Lfm2VlImageProcessor", "image_std": [0.5, 0.5, 0.5], "max_image_tokens": 8,
          "max_num_patches": 32, "max_pixels_tolerance": 2.0, "max_tiles": 4, "min_image_tokens": 2, "min_tiles": 2,
          "resample": 2, "rescale_factor": 1 / 255, "return_row_col_info": False, "size": {"height": 512, "width": 512},
          "tile_size": 16, "use_thumbnail": True}
PROMPT = "what is in <image>, <image> and <image>?"
# sha256 of Lfm2VlProcessor's pixel_values (float32 bytes, (9, 32, 48)) and of str(input_ids) on rgb_images() and
# PROMPT (transformers 5.25, torchvision 0.28)
PIXELS_SHA = "4df4dc5e5efe8ced8cc24f1a1ee631192c82f436026b4f8b47b2c272e712d204"
IDS_SHA = "4de0756ecd30707034c3cf3d175bbf45200c468ce502670ea2784c56257928be"
SIZES = [[16, 16], [16, 16], [8, 32], [16, 16], [16, 16], [16, 16], [16, 16], [16, 16], [16, 24]]


def rgb_images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)) for shape in ((23, 57, 3), (9, 11, 3),
                                                                                       (70, 90, 3))]


@pytest.fixture(scope="module")
def lfm2(tmp_path_factory):
    path = tmp_path_factory.mktemp("lfm2_vl")
    tok = tokenizer(SPECIAL, pad_token="<unk>")
    torch.manual_seed(0)
    conf = transformers.Lfm2VlConfig(text_config=dict(LFM2, vocab_size=len(tok)), vision_config=SIGLIP2,
                                     image_token_id=tok.convert_tokens_to_ids("<image>"), projector_hidden_size=40,
                                     projector_hidden_act="gelu")
    hf = saved_with_processor(transformers.Lfm2VlForConditionalGeneration(conf), path, tok.eos_token_id, tok)
    (path / "processor_config.json").write_text(json.dumps({"image_processor": IMAGES,
                                                            "processor_class": "Lfm2VlProcessor"}))
    return path, hf, tok


def test_lfm2_prompt_and_pixels_are_the_processors(lfm2):
    path, hf, hf_tok = lfm2
    model, tok = llmarch.load(path), load_tokenizer(path)
    ids, arguments = image_request(model, tok, PROMPT, rgb_images())
    assert list(arguments) == ["pixel_values", "image_sizes"] and arguments["image_sizes"].tolist() == SIZES
    assert sha(arguments["pixel_values"].numpy().tobytes()) == PIXELS_SHA and sha(str(ids).encode()) == IDS_SHA
    assert ids[0] != hf_tok.bos_token_id and ids.count(model.vision.v.image_token_id) == 8 + 4 + 4 + 16 + 6
    assert image_request(model, tok, "what?", rgb_images()[:1])[0] == image_request(model, tok, "<image>what?",
                                                                                    rgb_images()[:1])[0]
    p = 4
    spatial = arguments["image_sizes"] // p
    mask = (torch.arange(32)[None] < (spatial[:, 0] * spatial[:, 1])[:, None]).long()
    expected = hf.generate(input_ids=torch.tensor([ids]), pixel_values=arguments["pixel_values"],
                           spatial_shapes=spatial, pixel_attention_mask=mask, max_new_tokens=5,
                           do_sample=False)[0].tolist()
    assert llmarch.generate(model, [ids], 5, **arguments)[0] == expected


def test_lfm2_against_transformers_processor(lfm2):
    """Where torchvision is installed: transformers' own Lfm2VlProcessor."""
    pytest.importorskip("torchvision")
    path, _, tok = lfm2
    processor = transformers.Lfm2VlProcessor(image_processor=transformers.Lfm2VlImageProcessor(**IMAGES),
                                             tokenizer=tok)
    _, _, (ids, arguments), want = ours_and_theirs(path, processor, PROMPT, rgb_images())
    assert ids == want["input_ids"][0].tolist() and torch.equal(arguments["pixel_values"], want["pixel_values"])
    assert torch.equal(arguments["image_sizes"], want["spatial_shapes"] * 4)


def test_cli_generate_with_an_lfm2_image(lfm2, tmp_path, capsys):
    path, hf, tok = lfm2
    rgb_images()[2].save(tmp_path / "big.png")
    prompt = "<image>what is in the picture?"
    ids, arguments = image_request(llmarch.load(path), load_tokenizer(path), prompt, [read_image(tmp_path / "big.png")])
    spatial = arguments["image_sizes"] // 4
    mask = (torch.arange(32)[None] < (spatial[:, 0] * spatial[:, 1])[:, None]).long()
    out = hf.generate(input_ids=torch.tensor([ids]), pixel_values=arguments["pixel_values"], spatial_shapes=spatial,
                      pixel_attention_mask=mask, max_new_tokens=4, do_sample=False)[0]
    generate_prints(capsys, path, tmp_path / "big.png", prompt, tok.decode(out, skip_special_tokens=True))
