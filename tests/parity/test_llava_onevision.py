"""LLaVA-OneVision (llava_onevision; interop/llava_onevision.py over vision/anyres.py) against transformers in fp32:
a SigLIP tower and a Qwen2 text model, two images in a left-padded batch, one whose unpadded 8 x 8 feature grid
exceeds the anyres_max_2 budget (two tiles' 32 patches) and is bilinearly downscaled to 5 x 5, one whose 2 x 8 grid
does not: logits, greedy tokens equal to its generate, cached decoding after the image prefill equal to the whole
forward, the to_hf round trip; then images from files through the image processor, the processor's prompt and
`llmarch generate --image`. A tiny random checkpoint, its tower's matrices drawn N(0, 0.1) and every norm gain and
bias (and image_newline) moved off its init."""
import json

import pytest
import torch
import transformers

import llmarch
from conftest import perturbed
from test_llava_next import assert_cached_after_image_prefill, assert_round_trip, batch as anyres_batch, gap, hf_logits
from llmarch.errors import LlmarchError
from llmarch.interop.llava_next import from_config as write_llava_next
from llmarch.interop.llava_onevision import to_config as read_config
from llmarch.vision.anyres_grid import image_tokens
from llmarch.vision.preprocess import processor_for

TEXT = dict(model_type="qwen2", hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=100)
TOWER = dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=48, num_hidden_layers=2,
             num_attention_heads=4, image_size=8, patch_size=2, vision_use_head=False)
PINPOINTS = [[8, 16], [16, 8], [16, 16]]
SIZES = [(10, 40), (30, 32)]  # (height, width): 1 x 2 tiles, 2 x 8 features kept; 2 x 2 tiles, 8 x 8 downscaled
TILES = 5  # the most tiles of an image, with its downscaled whole
PROCESSOR = dict(size={"height": 8, "width": 8}, image_grid_pinpoints=PINPOINTS)


def hf_config(**more):
    return transformers.LlavaOnevisionConfig(**{**dict(
        text_config=TEXT, vision_config=TOWER, image_token_index=99, image_grid_pinpoints=PINPOINTS,
        vision_aspect_ratio="anyres_max_2"), **more})


def random_model(config):
    torch.manual_seed(0)
    hf = transformers.LlavaOnevisionForConditionalGeneration(config)
    with torch.no_grad():
        for p in hf.model.vision_tower.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.1)
    hf = perturbed(hf)
    hf.generation_config.eos_token_id = None
    return hf


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    hf = random_model(hf_config())
    path = tmp_path_factory.mktemp("llava_onevision")
    hf.save_pretrained(path)
    return hf, llmarch.from_hf(path)


def batch(ours):
    return anyres_batch(ours, SIZES, TILES)


def test_token_counts_follow_the_budget(pair):
    """16 features of the downscaled image, then the grid's rows, each with its newline: 2 x 8 kept, 8 x 8 over
    the budget resized to 5 x 5 (ratio sqrt(64 / 32), 8 // ratio = 5)."""
    v = pair[1].vision.v
    assert v.max_tiles == 2 and [image_tokens(v, *s) for s in SIZES] == [16 + 2 * 9, 16 + 5 * 6]


def test_logits_with_two_images_one_downscaled(pair):
    hf, ours = pair
    ids, mask, pixels, sizes = batch(ours)
    with torch.no_grad():
        mine = ours(ids, attention_mask=mask, pixel_values=pixels, image_sizes=sizes).logits
    assert gap(mine, hf_logits(hf, ids, mask, pixels, sizes), mask) <= 1e-4


def test_greedy_tokens_equal_transformers_generate(pair):
    hf, ours = pair
    ids, mask, pixels, sizes = batch(ours)
    theirs = hf.generate(input_ids=ids, pixel_values=pixels, image_sizes=sizes, attention_mask=mask,
                         max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert torch.equal(llmarch.generate(ours, ids, 8, attention_mask=mask, pixel_values=pixels, image_sizes=sizes),
                       theirs)


def test_cached_decoding_after_an_image_prefill_equals_the_whole_forward(pair):
    assert_cached_after_image_prefill(pair[1], *batch(pair[1]))


def test_round_trip_loads_in_transformers_to_the_same_logits(pair, tmp_path):
    assert_round_trip(*pair, tmp_path / "out", *batch(pair[1]))


def test_unsupported_variants_are_refused(pair):
    _, ours = pair
    with pytest.raises(LlmarchError, match="vision_aspect_ratio"):
        read_config(hf_config(vision_aspect_ratio="anyres").to_dict())
    with pytest.raises(LlmarchError, match="drops a SigLIP patch"):
        read_config(hf_config(vision_feature_select_strategy="default").to_dict())
    with pytest.raises(LlmarchError, match="max_tiles"):
        ours.config.replace(vision={**ours.config.vision, "max_tiles": 0})
    with pytest.raises(LlmarchError, match="max_tiles"):
        ours.config.replace(vision={**ours.config.vision, "grid_pinpoints": None})
    with pytest.raises(LlmarchError, match="write llava_onevision"):
        write_llava_next(ours.config)  # which would drop the budget


def pil_images():
    """Three aspect ratios and modes: wide RGB, tall RGBA, a grayscale one nearly square."""
    from test_vision_images import noise_images

    return noise_images((10, 40, 3), (41, 13, 4), (30, 32))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny random checkpoint saved with LlavaOnevisionImageProcessorPil and a tokenizer, LlavaOnevisionProcessor
    over them (without its video processor, whose check needs torchvision), transformers' model and ours."""
    from test_vision_images import tokenizer

    from llmarch.data.tokenizer import load_tokenizer

    path = tmp_path_factory.mktemp("onevision_files")
    images = transformers.LlavaOnevisionImageProcessorPil(**PROCESSOR)
    tok = tokenizer(["<unk>", "<s>", "</s>", "<image>"])

    class ImagesOnly(transformers.LlavaOnevisionProcessor):
        def check_argument_for_proper_class(self, name, argument):
            return None if argument is None else super().check_argument_for_proper_class(name, argument)

    processor = ImagesOnly(image_processor=images, tokenizer=tok, video_processor=None, num_image_tokens=16,
                           vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_2")
    config = hf_config()
    config.text_config.vocab_size, config.image_token_id = len(tok), tok.convert_tokens_to_ids("<image>")
    hf = random_model(config)
    hf.save_pretrained(path)
    images.save_pretrained(path)  # the processor's own save needs its video processor
    tok.save_pretrained(path)
    (path / "generation_config.json").write_text(json.dumps({"eos_token_id": tok.eos_token_id}))
    return path, hf, processor, llmarch.load(path), load_tokenizer(path)


def test_images_from_files_match_the_processors_and_generate(saved, capsys):
    """LlavaOnevisionImageProcessorPil on images of three aspect ratios and modes: pixel_values and image_sizes
    equal; then LlavaOnevisionProcessor's input_ids for a prompt about one image (downscaled under the budget) and
    the greedy tokens of transformers' generate, through llmarch's image processor, prompt and generate, and
    `llmarch generate --image`."""
    from llmarch.cli import main
    from llmarch.vision.anyres_pixels import image_sizes
    from llmarch.vision.prompts import image_request

    path, hf, processor, model, tok = saved
    pil = pil_images()
    images = processor.image_processor
    want = images(pil, return_tensors="pt")
    mine = processor_for({**images.to_dict(), "image_processor_type": "LlavaOnevisionImageProcessor"})
    mine = mine.tiled(pil)  # every image tiled, as a flat list is
    assert torch.equal(mine["pixel_values"], want["pixel_values"]) and torch.equal(mine["image_sizes"],
                                                                                   want["image_sizes"])
    assert torch.equal(image_sizes(pil), want["image_sizes"])
    prompt = "USER: <image>\nwhat is in the picture? ASSISTANT:"
    want = processor(images=pil[2:], text=prompt, return_tensors="pt")
    ids, arguments = image_request(model, tok, prompt, pil[2:])
    assert ids == want["input_ids"][0].tolist() and ids.count(model.vision.v.image_token_id) == 16 + 5 * 6
    assert torch.equal(arguments["pixel_values"], want["pixel_values"])
    expected = hf.generate(**want, max_new_tokens=6, do_sample=False)[0].tolist()
    assert llmarch.generate(model, [ids], 6, **arguments)[0] == expected
    pil[2].save(path / "image.png")
    code = main(["generate", "--checkpoint", str(path), "--image", str(path / "image.png"), "--prompt",
                 prompt, "--temperature", "0", "--max-new-tokens", "6", "--no-stream"])
    out, err = capsys.readouterr()
    assert code in (0, None) and out == processor.tokenizer.decode(expected, skip_special_tokens=True) + "\n", err


def test_several_images_in_one_prompt_are_the_multi_image_mode(saved, capsys):
    """Two images to one prompt: transformers' multi-image mode (images nested per prompt, batch_num_images [2]):
    each padded to a square with the mean colour and taken as one tile, 16 features and a newline each; pixel_values
    and input_ids equal to the processor's, logits within 1e-4 of transformers', its greedy tokens, and the chat
    layout's ids; `llmarch generate` with two --image files."""
    from llmarch.cli import main
    from llmarch.vision.prompts import chat_request, image_request

    path, hf, processor, model, tok = saved
    pil = pil_images()[:2]
    prompt = "USER: <image>\n<image>\nwhat differs? ASSISTANT:"
    want = processor(images=[pil], text=prompt, return_tensors="pt")
    assert want["batch_num_images"].tolist() == [2] and want["pixel_values"].shape == (2, 1, 3, 8, 8)
    ids, arguments = image_request(model, tok, prompt, pil)
    assert ids == want["input_ids"][0].tolist() and ids.count(model.vision.v.image_token_id) == 2 * (16 + 1)
    assert torch.equal(arguments["pixel_values"], want["pixel_values"])
    assert torch.equal(arguments["image_sizes"], want["image_sizes"])
    x = torch.tensor([ids])
    with torch.no_grad():
        theirs = hf(**want).logits
        mine = model(x, **arguments).logits
    assert (mine - theirs).abs().max() <= 1e-4, (mine - theirs).abs().max()
    expected = hf.generate(**want, max_new_tokens=6, do_sample=False)[0].tolist()
    assert llmarch.generate(model, [ids], 6, **arguments)[0] == expected
    assert chat_request(model, tok, prompt, pil)[0] == ids  # the chat command's and the server's
    for k, image in enumerate(pil):  # PNG keeps the pixels (the RGBA one too)
        image.save(path / f"{k}.png")
    code = main(["generate", "--checkpoint", str(path), "--image", str(path / "0.png"), "--image",
                 str(path / "1.png"), "--prompt", prompt, "--temperature", "0", "--max-new-tokens", "6", "--no-stream"])
    out, err = capsys.readouterr()
    assert code in (0, None) and out == processor.tokenizer.decode(expected, skip_special_tokens=True) + "\n", err
