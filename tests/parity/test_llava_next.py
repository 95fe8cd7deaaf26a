"""LLaVA-NeXT (llava_next; src/llmarch/vision/anyres.py, interop/llava_next.py) against transformers in fp32: two
images of different aspect ratios (one cut into 1 x 2 tiles whose feature rows are unpadded, one into 2 x 1 whose
columns are) in a left-padded batch: logits, greedy tokens equal to its generate, cached decoding after the image
prefill equal to the whole forward, and the to_hf round trip. A tiny random checkpoint, its tower's matrices drawn
N(0, 0.1) and every norm gain and bias (and image_newline) moved off its init."""
import json

import pytest
import torch
import transformers

import llmarch
from conftest import image_token_batch, perturbed, prefilled_then_stepped
from llmarch.errors import LlmarchError
from llmarch.interop.llava_next import to_config as read_config
from llmarch.vision.anyres_grid import image_tokens

TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=8, vocab_size=100)
TOWER = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, image_size=8,
             patch_size=2)
PINPOINTS = [[8, 16], [16, 8], [16, 16]]
SIZES = [(10, 40), (40, 12)]  # (height, width): 1 x 2 tiles, rows cut; 2 x 1 tiles, columns cut
TILES = 3  # the most tiles of an image, with its downscaled whole
PROCESSOR = dict(size={"shortest_edge": 8}, crop_size={"height": 8, "width": 8}, image_grid_pinpoints=PINPOINTS)


def hf_config(text: str = "llama", **more):
    return transformers.LlavaNextConfig(text_config=dict(model_type=text, **TEXT), image_token_index=99,
                                        vision_config=dict(model_type="clip_vision_model", **TOWER),
                                        image_grid_pinpoints=PINPOINTS, **more)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    torch.manual_seed(0)
    hf = transformers.LlavaNextForConditionalGeneration(hf_config())
    with torch.no_grad():
        for p in hf.model.vision_tower.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.1)
    hf = perturbed(hf)
    hf.generation_config.eos_token_id = None
    path = tmp_path_factory.mktemp("llava_next")
    hf.save_pretrained(path)
    return hf, llmarch.from_hf(path)


def batch(ours, sizes=SIZES, tiles=TILES):
    """ids (2, T) left-padded, each row text, one image's tokens, at least 4 text tokens; its mask; the images (2,
    tiles, 3, 8, 8) and their sizes (AnyRes models: test_llava_onevision.py's too)."""
    v = ours.vision.v
    counts = [image_tokens(v, *s) for s in sizes]
    ids, mask, g = image_token_batch([counts[0] + 8, counts[1] + 6], [[(2, k)] for k in counts], v.image_token_id)
    return ids, mask, torch.randn(2, tiles, 3, 8, 8, generator=g), torch.tensor(sizes)


def hf_logits(hf, ids, mask, pixels, sizes):
    with torch.no_grad():
        return hf(input_ids=ids, pixel_values=pixels, image_sizes=sizes, attention_mask=mask,
                  position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits


def gap(a, b, mask) -> float:
    return (a - b)[mask.bool()].abs().max().item()


def test_token_counts_follow_the_image_sizes(pair):
    """16 features of the downscaled image, then the unpadded grid's rows, each with its newline."""
    v = pair[1].vision.v
    assert [image_tokens(v, *s) for s in SIZES] == [16 + 2 * 9, 16 + 8 * 3]


def test_logits_with_two_images_of_different_aspect_ratios(pair):
    hf, ours = pair
    ids, mask, pixels, sizes = batch(ours)
    with torch.no_grad():
        mine = ours(ids, attention_mask=mask, pixel_values=pixels, image_sizes=sizes).logits
    assert gap(mine, hf_logits(hf, ids, mask, pixels, sizes), mask) <= 1e-4


def test_greedy_and_beam_tokens_equal_transformers_generate(pair):
    hf, ours = pair
    ids, mask, pixels, sizes = batch(ours)
    theirs = hf.generate(input_ids=ids, pixel_values=pixels, image_sizes=sizes, attention_mask=mask,
                         max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert torch.equal(llmarch.generate(ours, ids, 8, attention_mask=mask, pixel_values=pixels, image_sizes=sizes),
                       theirs)
    beams = hf.generate(input_ids=ids, pixel_values=pixels, image_sizes=sizes, attention_mask=mask, max_new_tokens=4,
                        do_sample=False, num_beams=3, pad_token_id=0)  # each beam its row's image embeddings
    assert torch.equal(llmarch.generate(ours, ids, 4, attention_mask=mask, pixel_values=pixels, image_sizes=sizes,
                                        num_beams=3), beams)


def test_cached_decoding_after_an_image_prefill_equals_the_whole_forward(pair):
    assert_cached_after_image_prefill(pair[1], *batch(pair[1]))


def assert_cached_after_image_prefill(ours, ids, mask, pixels, sizes):
    """The prompt with its images prefilled, its last 3 tokens decoded one at a time from the cache: the whole
    forward's logits (LLaVA-NeXT's, LLaVA-OneVision's and Pixtral's image_sizes batches)."""
    P = ids.shape[1] - 3
    with torch.no_grad():
        whole = ours(ids, attention_mask=mask, pixel_values=pixels, image_sizes=sizes).logits
        embeds = ours.embed_inputs(ids[:, :P], pixels, image_sizes=sizes)
    assert gap(prefilled_then_stepped(ours, ids, mask, P, embeds), whole[:, P - 1:], mask[:, P - 1:]) <= 1e-4


def test_round_trip_loads_in_transformers_to_the_same_logits(pair, tmp_path):
    assert_round_trip(*pair, tmp_path / "out", *batch(pair[1]))


def assert_round_trip(hf, ours, out, ids, mask, pixels, sizes):
    """to_hf's checkpoint loads in transformers to the same logits, and back into llmarch to the same config."""
    llmarch.to_hf(ours, out)
    again = type(hf).from_pretrained(out).eval()
    assert gap(hf_logits(again, ids, mask, pixels, sizes), hf_logits(hf, ids, mask, pixels, sizes), mask) <= 1e-4
    assert llmarch.from_hf(out).config.to_dict() == {**ours.config.to_dict(), "name": ours.config.name}


def test_wrong_sizes_or_pinpoints_are_refused(pair):
    _, ours = pair
    ids, mask, pixels, sizes = batch(ours)
    with pytest.raises(LlmarchError, match="need image_sizes"):
        ours(ids, attention_mask=mask, pixel_values=pixels)
    with pytest.raises(LlmarchError, match="given without them"):
        llmarch.generate(ours, ids, 2, attention_mask=mask, image_sizes=sizes)
    blank = torch.ones(pixels.shape[0], *pixels.shape[-2:])  # a pixel mask, which only Idefics3's tower reads
    with pytest.raises(LlmarchError, match="pixel_attention_mask describes"):
        ours(ids, attention_mask=mask, pixel_attention_mask=blank)
    with pytest.raises(LlmarchError, match="pixel_attention_mask describes"):
        llmarch.generate(ours, ids, 2, attention_mask=mask, pixel_attention_mask=blank)
    with pytest.raises(LlmarchError, match="image tokens"):
        ours(ids, attention_mask=mask, pixel_values=pixels, image_sizes=sizes[[0, 0]])
    with pytest.raises(LlmarchError, match="multiples of image_size"):
        ours.config.replace(vision={**ours.config.vision, "grid_pinpoints": [[8, 12]]})
    with pytest.raises(LlmarchError, match="class token"):
        read_config(hf_config(vision_feature_select_strategy="full").to_dict())


def test_pixel_values_and_image_sizes_are_the_image_processors(tmp_path):
    """LlavaNextImageProcessorPil (its tiles, padding, per-tile CLIP pipeline) on images of three aspect ratios and
    modes (RGB, RGBA composited onto white, grayscale): pixel_values equal, image_sizes the same."""
    import numpy as np
    from PIL import Image

    from llmarch.vision.anyres_pixels import image_sizes
    from llmarch.vision.preprocess import image_processor_config, processor_for

    hf = transformers.LlavaNextImageProcessorPil(**PROCESSOR)
    hf.save_pretrained(tmp_path)
    config = image_processor_config({"preprocessor_config.json": (tmp_path / "preprocessor_config.json")
                                    .read_bytes()}, str(tmp_path))
    rng = np.random.default_rng(0)
    pil = [Image.fromarray(rng.integers(0, 256, (10, 40, 3), dtype=np.uint8)),
           Image.fromarray(rng.integers(0, 256, (41, 13, 4), dtype=np.uint8), "RGBA"),
           Image.fromarray(rng.integers(0, 256, (17, 19), dtype=np.uint8))]
    want = hf(pil, return_tensors="pt")
    ours = processor_for(config)(pil)["pixel_values"]
    assert ours.shape == want["pixel_values"].shape and torch.equal(ours, want["pixel_values"])
    assert torch.equal(image_sizes(pil), want["image_sizes"])


def test_prompt_from_files_is_the_processors_and_generates_its_tokens(tmp_path, capsys):
    """LlavaNextProcessor's input_ids for a prompt with two images of different sizes (each <image> expanded to its
    own count) and, on a tiny random checkpoint saved with it, the greedy tokens of transformers' generate from the
    processor's output, through llmarch's image processor, prompt and generate."""
    import numpy as np
    from PIL import Image
    from test_vision_images import tokenizer

    from llmarch.data.tokenizer import load_tokenizer
    from llmarch.vision.anyres_pixels import anyres_request

    tok = tokenizer(["<unk>", "<s>", "</s>", "<image>"])
    processor = transformers.LlavaNextProcessor(
        image_processor=transformers.LlavaNextImageProcessorPil(**PROCESSOR),
        tokenizer=tok, patch_size=2, vision_feature_select_strategy="default", num_additional_image_tokens=1)
    torch.manual_seed(0)
    config = hf_config()
    config.text_config.vocab_size, config.image_token_id = len(tok), tok.convert_tokens_to_ids("<image>")
    hf = perturbed(transformers.LlavaNextForConditionalGeneration(config))
    hf.generation_config.eos_token_id = None
    hf.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": tok.eos_token_id}))
    model, ours_tok = llmarch.load(tmp_path), load_tokenizer(tmp_path)
    rng = np.random.default_rng(1)
    pil = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in SIZES]
    prompt = "USER: <image>\nwhat is in the picture? <image> ASSISTANT:"
    want = processor(images=pil, text=prompt, return_tensors="pt")
    ids, pixels, sizes = anyres_request(model, ours_tok, prompt, pil)
    assert ids == want["input_ids"][0].tolist() and torch.equal(pixels, want["pixel_values"])
    assert torch.equal(sizes, want["image_sizes"])
    expected = hf.generate(**want, max_new_tokens=6, do_sample=False)[0].tolist()
    assert llmarch.generate(model, [ids], 6, pixel_values=pixels, image_sizes=sizes)[0] == expected
    # the CLI: images from files through the same processor and prompt, transformers' continuation printed
    from llmarch.cli import main

    for k, image in enumerate(pil):
        image.save(tmp_path / f"{k}.png")
    text = processor.tokenizer.decode(expected, skip_special_tokens=True)
    code = main(["generate", "--checkpoint", str(tmp_path), "--image", str(tmp_path / "0.png"), "--image",
                 str(tmp_path / "1.png"), "--prompt", prompt, "--temperature", "0", "--max-new-tokens", "6",
                 "--no-stream"])
    out, err = capsys.readouterr()
    assert code in (0, None) and out == text + "\n", err


def test_a_mistral_text_model_with_its_sliding_window(tmp_path):
    """llava-v1.6-mistral's layout: a Mistral text model whose window (16) is shorter than the prompts, read with it
    and written back as mistral."""
    torch.manual_seed(0)
    hf = perturbed(transformers.LlavaNextForConditionalGeneration(hf_config("mistral")))
    hf.config.text_config.sliding_window = 16
    hf.save_pretrained(tmp_path)
    ours = llmarch.from_hf(tmp_path)
    ids, mask, pixels, sizes = batch(ours)
    assert ours.config.sliding_window == 16 and ids.shape[1] > 16
    with torch.no_grad():
        mine = ours(ids, attention_mask=mask, pixel_values=pixels, image_sizes=sizes).logits
    assert gap(mine, hf_logits(hf, ids, mask, pixels, sizes), mask) <= 1e-4
    llmarch.to_hf(ours, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "config.json").read_text())["text_config"]["model_type"] == "mistral"
    assert llmarch.from_hf(tmp_path / "out").config.to_dict() == {**ours.config.to_dict(), "name": ours.config.name}


def test_a_published_config_reads_with_transformers_defaults():
    """llava-v1.6-mistral's config names neither the text model's width nor its depth, nor the pinpoints or the tower
    (LlavaNextConfig's CLIP ViT-L/14 at 336): MistralConfig's and LlavaNextConfig's defaults fill them."""
    cfg = read_config(dict(model_type="llava_next", text_config=dict(
        model_type="mistral", intermediate_size=14336, vocab_size=32064, sliding_window=None)))
    v = cfg.vision
    assert (cfg.d_model, cfg.n_layers, cfg.n_kv_heads, cfg.sliding_window, cfg.vocab_size) == (4096, 32, 8, None, 32064)
    assert (v["width"], v["n_layers"], v["image_size"], v["patch_size"]) == (1024, 24, 336, 14)
    assert v["feature_layers"] == [-2] and v["drop_first"]
    assert v["grid_pinpoints"][-1] == [336, 1008]
    assert read_config(dict(model_type="llava_next", text_config=dict(
        model_type="mistral"))).sliding_window == 4096
