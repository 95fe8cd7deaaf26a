"""Qwen2-VL's, Qwen2.5-VL's and Qwen3-VL's images (vision/qwen_*.py) against transformers, through files: tiny seeded
Qwen2VLForConditionalGeneration, Qwen2_5_VLForConditionalGeneration and Qwen3VLForConditionalGeneration (a 2- or 3-block
tower; Qwen2.5-VL's with windows of 2 x 2 merged groups and one full-attention block, its images' groups not a multiple
of the window, so the last windows are partial; Qwen3-VL's with a 4 x 4 table of learned positions resampled to each
image and DeepStack features from two blocks, its text M-RoPE interleaved), 1-D parameters perturbed and the tower's
matrices drawn N(0, 0.1) so that it moves the logits, read by from_hf. On a left-padded batch of one row with one image
and one with two images of other sizes (preprocessed by qwen_pixels.py, which must equal transformers' PIL image
processor), the logits agree within 1e-4 (fp32) on real tokens; 8 greedy tokens and 6 of a 3-beam search equal
transformers' generate with the images; decoding from the cache after the image prompt (its M-RoPE delta) equals the
whole forward; a to_hf round trip keeps the tower (transformers loads it to the same logits, llmarch to the same
config)."""
import numpy as np
import pytest
import torch

import llmarch
from llmarch.errors import LlmarchError
from llmarch.interop import from_hf, to_hf
from llmarch.vision.qwen_pixels import qwen_vl_pixels, smart_resize

from test_qwen_vl_images import random_model

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()
Image = pytest.importorskip("PIL.Image")

IMAGE, START = 100, 102  # <|image_pad|>, <|vision_start|>
TEXT = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, rope_parameters=dict(rope_type="default", rope_theta=10000.0,
                                                          mrope_section=[2, 3, 3]))
VISION = dict(patch_size=4, temporal_patch_size=2, spatial_merge_size=2, num_heads=2)
QWEN3_TEXT = dict(TEXT, head_dim=16, rope_parameters=dict(rope_type="default", rope_theta=10000.0,
                                                          mrope_section=[3, 3, 2], mrope_interleaved=True))
CASES = {  # model_type: (class prefix, text config, vision config)
    "qwen2_vl": ("Qwen2VL", TEXT, dict(VISION, depth=2, embed_dim=32, hidden_size=64, mlp_ratio=2)),
    "qwen2_5_vl": ("Qwen2_5_VL", TEXT, dict(VISION, depth=3, hidden_size=32, out_hidden_size=64, intermediate_size=40,
                                            window_size=16, fullatt_block_indexes=[1])),
    "qwen3_vl": ("Qwen3VL", QWEN3_TEXT, dict(VISION, depth=3, hidden_size=32, out_hidden_size=64, intermediate_size=40,
                                             num_position_embeddings=16, deepstack_visual_indexes=[0, 2])),
}
PIXELS = dict(patch_size=4, merge_size=2, temporal_patch_size=2, min_pixels=16 * 16, max_pixels=48 * 48)
SIZES = ((45, 37), (23, 61), (30, 30))  # (height, width): odd sizes that smart_resize rounds to multiples of 8


def images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in SIZES]


@pytest.fixture(scope="module", params=sorted(CASES))
def pair(request, tmp_path_factory):
    case = request.param
    prefix, text, vision = CASES[request.param]
    hf = random_model(prefix, text_config=text, vision_config=vision, image_token_id=IMAGE,
                      vision_start_token_id=START)
    folder = tmp_path_factory.mktemp(case)
    hf.save_pretrained(folder / "hf")
    hf.generation_config.eos_token_id = None
    return case, hf, from_hf(folder / "hf").eval(), folder


def prompt_batch(grid: torch.Tensor):
    """Row 0: text, image 0, text; row 1: text, image 1, text, image 2, text; left-padded. -> ids, mask."""
    tokens = [int(t * h * w) // 4 for t, h, w in grid.tolist()]
    rows = [[5, 6, START] + [IMAGE] * tokens[0] + [7, 8],
            [9, START] + [IMAGE] * tokens[1] + [10, 11, START] + [IMAGE] * tokens[2] + [12, 13, 14]]
    T = max(map(len, rows))
    ids, mask = torch.zeros(2, T, dtype=torch.long), torch.zeros(2, T, dtype=torch.long)
    for b, row in enumerate(rows):
        ids[b, T - len(row):], mask[b, T - len(row):] = torch.tensor(row), 1
    return ids, mask


def test_pixels_equal_transformers_image_processor():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as theirs_resize

    processor = Qwen2VLImageProcessorPil(**PIXELS)
    theirs = processor(images=images(), return_tensors="pt")
    pixel_values, grid = qwen_vl_pixels(images(), processor.to_dict())
    assert torch.equal(grid, theirs["image_grid_thw"]) and grid[:, 1:].tolist() == [[12, 10], [6, 16], [8, 8]]
    assert (pixel_values - theirs["pixel_values"]).abs().max() <= 1e-5
    for h, w in ((10, 1000), (2000, 3000), (333, 517)):  # scaled up to min_pixels, down to max_pixels, rounded
        assert smart_resize(h, w, 28, 56 * 56, 28 * 28 * 1280) == theirs_resize(h, w, 28, 56 * 56, 28 * 28 * 1280)
    with pytest.raises(LlmarchError, match="aspect ratio"):
        smart_resize(1, 300, 28, 56 * 56, 28 * 28 * 1280)


def test_images_logits_generation_cached_decoding_and_round_trip(pair):
    case, hf, ours, folder = pair
    assert (ours.config.hf_model_type, ours.config.vision["tower"]) == (case, "qwen_vl")
    assert_images_match(hf, ours, folder, *qwen_vl_pixels(images(), PIXELS))


def assert_images_match(hf, ours, folder, pixel_values, grid, beams: bool = True):
    """On prompt_batch's rows about the images: logits within 1e-4 of transformers', greedy (and, with `beams`, beam)
    tokens equal, cached decoding equal to the whole forward, the to_hf round trip in `folder` to the same logits and
    config."""
    ids, mask = prompt_batch(grid)
    images_kw = dict(pixel_values=pixel_values, image_grid_thw=grid)
    real = mask.bool()
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask, mm_token_type_ids=(ids == IMAGE).int(), **images_kw).logits
        mine = ours(ids, attention_mask=mask, **images_kw).logits
    assert (mine - theirs)[real].abs().max() <= 1e-4
    generated = llmarch.generate(ours, ids, attention_mask=mask, max_new_tokens=8, **images_kw)
    expected = hf.generate(input_ids=ids, attention_mask=mask, mm_token_type_ids=(ids == IMAGE).int(),
                           max_new_tokens=8, do_sample=False, pad_token_id=0, **images_kw)
    assert torch.equal(generated, expected)
    search = dict(max_new_tokens=6, num_beams=3)  # each beam its row's positions and delta, reordered with it
    assert not beams or torch.equal(llmarch.generate(ours, ids, attention_mask=mask, **search, **images_kw),
                                    hf.generate(input_ids=ids, attention_mask=mask, do_sample=False, pad_token_id=0,
                                                mm_token_type_ids=(ids == IMAGE).int(), **search, **images_kw))
    assert_cached_after_images_equals_whole(ours, ids, mask, images_kw)
    to_hf(ours, folder / "out")
    again = type(hf).from_pretrained(folder / "out").eval()
    with torch.no_grad():
        back = again(input_ids=ids, attention_mask=mask, mm_token_type_ids=(ids == IMAGE).int(), **images_kw).logits
    assert (back - mine)[real].abs().max() <= 1e-4
    assert from_hf(folder / "out").config.to_dict() == {**ours.config.to_dict(), "name": ours.config.name}


def assert_cached_after_images_equals_whole(ours, ids, mask, images_kw, new: int = 4):
    """The image (or video) prompt in one call, then `new` text tokens one per call shifted by the prompt's M-RoPE
    delta: the whole forward's logits within 1e-4 on every real position."""
    more = torch.randint(0, IMAGE, (ids.shape[0], new))
    full, full_mask = torch.cat([ids, more], 1), torch.cat([mask, torch.ones_like(more)], 1)
    T = ids.shape[1]
    with torch.no_grad():
        whole = ours(full, attention_mask=full_mask, **images_kw).logits
        _, delta = ours.vision.rope_index(ids, mask, *(images_kw.get(k) for k in (
            "image_grid_thw", "video_grid_thw", "second_per_grid_ts")))
        ours.setup_cache(ids.shape[0], T + new)
        try:
            steps = [ours(ids, attention_mask=full_mask, input_pos=torch.arange(T), kv_len=T, **images_kw).logits]
            steps += [ours(full[:, t:t + 1], attention_mask=full_mask, input_pos=torch.tensor([t]), kv_len=t + 1,
                           rope_delta=delta).logits for t in range(T, T + new)]
        finally:
            ours.clear_cache()
    assert (torch.cat(steps, 1) - whole)[full_mask.bool()].abs().max() <= 1e-4


def test_what_is_refused(pair):
    case, hf, ours, _ = pair
    pixel_values, grid = qwen_vl_pixels(images()[:1], PIXELS)
    ids = torch.tensor([[5] + [IMAGE] * (int(grid.prod()) // 4 - 1) + [6]])  # one image token short
    with pytest.raises(LlmarchError, match="image tokens"):
        ours(ids, pixel_values=pixel_values, image_grid_thw=grid)
    with pytest.raises(LlmarchError, match="image_grid_thw"):
        ours(ids, pixel_values=pixel_values)
    with pytest.raises(LlmarchError, match="pixel_values must be"):
        ours(ids, pixel_values=pixel_values[1:], image_grid_thw=grid)


def test_vision_configs_refused_in_one_line():
    """What the tower cannot be, refused before anything is built: another hidden_act, windows with DeepStack, a
    merger that does not reach the text width, a text model without M-RoPE."""
    from llmarch.interop.hf import hf_model_config

    base = dict(model_type="qwen2_vl", text_config=TEXT, vision_config=CASES["qwen2_vl"][2])
    assert hf_model_config(base).vision["ffn"] == "quick_gelu"
    for vision, match in ((dict(CASES["qwen2_vl"][2], hidden_act="gelu"), "hidden_act"),
                          (dict(CASES["qwen2_vl"][2], hidden_size=48), "out_width")):
        with pytest.raises(LlmarchError, match=match):
            hf_model_config({**base, "vision_config": vision})
    cfg = hf_model_config(base)
    v = dict(cfg.vision, window_size=16, full_layers=[0], deepstack_layers=[1])
    with pytest.raises(LlmarchError, match="deepstack_layers with windows"):
        cfg.replace(vision=v)
    with pytest.raises(LlmarchError, match="M-RoPE"):
        cfg.replace(mrope_section=None)


def test_info_describes_the_tower(pair, capsys):
    """`llmarch info` on a Qwen-VL checkpoint describes its tower (not the fixed-size ViT's fields it lacks)."""
    from llmarch.cli import main

    case, hf, _, folder = pair
    assert main(["info", str(folder / "hf")]) in (0, None)
    vision = hf.config.vision_config
    layers = getattr(vision, "depth", None) or vision.num_hidden_layers
    out = capsys.readouterr().out
    assert f"vision: {layers}-layer ViT" in out and "videos in 2-frame patches" in out
