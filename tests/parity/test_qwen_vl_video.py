"""Qwen2-VL's, Qwen2.5-VL's and Qwen3-VL's videos (pixel_values_videos, video_grid_thw; vision/qwen_inputs.py) against
transformers: the tiny seeded towers of test_qwen_vl_vision.py with a video token, 1-D parameters perturbed, the tower's
matrices drawn N(0, 0.1). A video alone, and a left-padded batch of two (a video in one row, an image then a video in
the other) agree in fp32 logits within 1e-4 on real tokens; Qwen2.5-VL's videos with second_per_grid_ts (temporal
positions tokens_per_second x seconds apart, floored: 0.7 s at 2 tokens a second gives 0, 1) and without (1 s);
Qwen3-VL's frames each after their own timestamp text (its processor's layout). Greedy tokens equal transformers'
generate; decoding from the cache after the prompt (its M-RoPE delta with videos) equals the whole forward."""
import pytest
import torch

import llmarch
from llmarch.errors import LlmarchError
from llmarch.interop import from_hf

from test_qwen_vl_images import random_model
from test_qwen_vl_vision import CASES, IMAGE, START, assert_cached_after_images_equals_whole

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

VIDEO, END, STAMP = 101, 103, 7  # <|video_pad|>, <|vision_end|>, a token standing for Qwen3-VL's "<0.5 seconds>"
IMAGE_GRID = torch.tensor([[1, 4, 4]])
VIDEO_GRID = torch.tensor([[2, 4, 6], [3, 6, 4]])  # (frames, rows, columns) of patches: 12 and 18 merged tokens


@pytest.fixture(scope="module", params=sorted(CASES))
def pair(request, tmp_path_factory):
    case = request.param
    prefix, text, vision = CASES[case]
    if case == "qwen2_5_vl":
        vision = dict(vision, tokens_per_second=2)
    hf = random_model(prefix, text_config=text, vision_config=vision, image_token_id=IMAGE, video_token_id=VIDEO,
                      vision_start_token_id=START)
    folder = tmp_path_factory.mktemp(case)
    hf.save_pretrained(folder)
    hf.generation_config.eos_token_id = None
    return case, hf, from_hf(folder).eval()


def video_tokens(case: str, grid: list[int]) -> list[int]:
    """A video's tokens as its processor writes them: Qwen3-VL's frame by frame, each after its timestamp."""
    t, h, w = grid
    if case.startswith("qwen3"):
        return sum(([STAMP, START] + [VIDEO] * (h * w // 4) + [END] for _ in range(t)), [])
    return [START] + [VIDEO] * (t * h * w // 4) + [END]


def left_padded(rows):
    T = max(map(len, rows))
    ids, mask = torch.zeros(len(rows), T, dtype=torch.long), torch.zeros(len(rows), T, dtype=torch.long)
    for b, row in enumerate(rows):
        ids[b, T - len(row):], mask[b, T - len(row):] = torch.tensor(row), 1
    return ids, mask


def inputs(case: str, seconds=None):
    """Row 0: text, video 0, text; row 1: text, an image, text, video 1, text (left-padded) -> ids, mask, the
    model's arguments (random pixels: the processor's are checked in tests/test_qwen_vl_videos.py)."""
    grids = VIDEO_GRID.tolist()
    rows = [[5, 6] + video_tokens(case, grids[0]) + [8, 9],
            [10, START] + [IMAGE] * 4 + [END, 11] + video_tokens(case, grids[1]) + [12]]
    ids, mask = left_padded(rows)
    g = torch.Generator().manual_seed(1)
    patch_dim = 3 * 2 * 4 * 4
    kw = dict(pixel_values=torch.randn(16, patch_dim, generator=g), image_grid_thw=IMAGE_GRID,
              pixel_values_videos=torch.randn(int(VIDEO_GRID.prod(-1).sum()), patch_dim, generator=g),
              video_grid_thw=VIDEO_GRID)
    if seconds is not None:
        kw["second_per_grid_ts"] = torch.tensor(seconds)
    return ids, mask, kw


def types(ids):
    return (ids == IMAGE).int() + 2 * (ids == VIDEO).int()


def video_alone(ids, mask, kw):
    """Row 0 alone, without its padding, with video 0 only."""
    keep = mask[0].bool()
    n = int(VIDEO_GRID[0].prod())
    alone = dict(pixel_values_videos=kw["pixel_values_videos"][:n], video_grid_thw=VIDEO_GRID[:1])
    if "second_per_grid_ts" in kw:
        alone["second_per_grid_ts"] = kw["second_per_grid_ts"][:1]
    return ids[:1, keep], alone


def seconds_cases(case):
    return [None, [0.7, 1.5]] if case == "qwen2_5_vl" else [None]


def test_video_logits_greedy_and_cached_decoding(pair):
    case, hf, ours = pair
    assert ours.config.vision["video_token_id"] == VIDEO
    for seconds in seconds_cases(case):
        ids, mask, kw = inputs(case, seconds)
        one, alone = video_alone(ids, mask, kw)
        with torch.no_grad():
            theirs = hf(input_ids=one, mm_token_type_ids=types(one), **alone).logits
            mine = ours(one, **alone).logits
            assert (mine - theirs).abs().max() <= 1e-4, seconds
            theirs = hf(input_ids=ids, attention_mask=mask, mm_token_type_ids=types(ids), **kw).logits
            mine = ours(ids, attention_mask=mask, **kw).logits
        assert (mine - theirs)[mask.bool()].abs().max() <= 1e-4, seconds
        if seconds is None and case == "qwen2_5_vl":  # its decoding is checked with timed positions
            continue
        out = hf.generate(input_ids=ids, attention_mask=mask, mm_token_type_ids=types(ids), max_new_tokens=4,
                          do_sample=False, pad_token_id=0, output_logits=True, return_dict_in_generate=True, **kw)
        assert torch.equal(llmarch.generate(ours, ids, attention_mask=mask, max_new_tokens=4, **kw), out.sequences)
        assert_cached_equals_transformers(ours, ids, mask, kw, out)
        assert_cached_after_images_equals_whole(ours, ids, mask, kw, new=3)


def assert_cached_equals_transformers(ours, ids, mask, kw, out):
    """The prompt in one call, then transformers' greedy tokens one per call at the row position plus the prompt's
    M-RoPE delta: each step's logits within 1e-4 of those transformers' generate decoded from its cache."""
    T, new = ids.shape[1], len(out.logits)
    full_mask = torch.cat([mask, torch.ones(ids.shape[0], new, dtype=mask.dtype)], 1)
    tokens = out.sequences[:, T:]
    with torch.no_grad():
        _, delta = ours.vision.rope_index(ids, mask, kw["image_grid_thw"], kw["video_grid_thw"],
                                          kw.get("second_per_grid_ts"))
        ours.setup_cache(ids.shape[0], T + new)
        try:
            steps = [ours(ids, attention_mask=full_mask, input_pos=torch.arange(T), kv_len=T, **kw).logits[:, -1:]]
            steps += [ours(tokens[:, k:k + 1], attention_mask=full_mask, input_pos=torch.tensor([T + k]),
                           kv_len=T + k + 1, rope_delta=delta).logits for k in range(new - 1)]
        finally:
            ours.clear_cache()
    assert (torch.cat(steps, 1) - torch.stack(out.logits, 1)).abs().max() <= 1e-4


def test_videos_refused_in_one_line(pair):
    case, _, ours = pair
    ids, mask, kw = inputs(case)
    one, alone = video_alone(ids, mask, kw)
    short = one.masked_fill((one == VIDEO).cumsum(1) == 1, 5)  # the first video token made text
    with pytest.raises(LlmarchError, match="video tokens"):
        ours(short, **alone)
    with pytest.raises(LlmarchError, match="pixel_values_videos must be"):
        ours(one, pixel_values_videos=alone["pixel_values_videos"][1:], video_grid_thw=alone["video_grid_thw"])
    with pytest.raises(LlmarchError, match="needs pixel_values_videos"):
        ours(one, video_grid_thw=alone["video_grid_thw"])
    with pytest.raises(LlmarchError, match="second_per_grid_ts"):
        ours(one, **alone, second_per_grid_ts=torch.tensor([1.0, 2.0]))
    no_video = ours.config.replace(vision={**ours.config.vision, "video_token_id": None})
    with pytest.raises(LlmarchError, match="no video_token_id"):
        llmarch.build(no_video).eval()(one, **alone)
