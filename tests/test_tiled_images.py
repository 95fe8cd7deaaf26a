"""GotOcr2ImageProcessor (src/llmarch/vision/tiled_images.py, InternVL's image processor) against transformers' PIL
class: pixel_values exactly equal and each image's tile count its num_patches, on images of odd sizes and modes, with
and without crop_to_patches; bad configs refused in one line."""
import numpy as np
import pytest
import torch

from llmarch.errors import LlmarchError
from llmarch.vision.preprocess import processor_for
from llmarch.vision.tiled_images import TiledImages, best_grid, grids  # importing it registers it

transformers = pytest.importorskip("transformers")
Image = pytest.importorskip("PIL.Image")


def pil_images():
    """Wide RGB, tall RGBA, small grayscale, exactly 1:2, square and larger than a tile."""
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (23, 57, 3), dtype=np.uint8)),
            Image.fromarray(rng.integers(0, 256, (50, 13, 4), dtype=np.uint8), "RGBA"),
            Image.fromarray(rng.integers(0, 256, (9, 11), dtype=np.uint8)),
            Image.fromarray(rng.integers(0, 256, (16, 32, 3), dtype=np.uint8)),
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))]


CASES = {"tiles": dict(size={"height": 16, "width": 16}, max_patches=6, crop_to_patches=True),
         "min-tiles-bilinear": dict(size={"height": 16, "width": 12}, min_patches=2, max_patches=5,
                                    crop_to_patches=True, resample=2, image_mean=0.5, image_std=[0.2, 0.3, 0.4]),
         "whole": dict(size={"height": 16, "width": 16}),
         "one-tile": dict(size={"height": 16, "width": 16}, crop_to_patches=True, max_patches=1)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_pixel_values_and_tile_counts_are_the_image_processors(case):
    hf = transformers.GotOcr2ImageProcessorPil(**CASES[case])
    config = {**hf.to_dict(), "image_processor_type": "GotOcr2ImageProcessorFast"}
    pil = pil_images()
    ours = processor_for(config)
    assert isinstance(ours, TiledImages)
    want = hf(pil, return_tensors="pt")
    assert torch.equal(ours(pil)["pixel_values"], want["pixel_values"])  # equal, not close
    assert [ours.count(im) for im in pil] == want["num_patches"].tolist()


def test_grids_are_transformers():
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import (get_all_supported_aspect_ratios,
                                                                              get_optimal_tiled_canvas)
    assert grids(1, 12) == get_all_supported_aspect_ratios(1, 12)
    for h, w in ((448, 448), (300, 900), (1000, 20), (10, 10), (448, 896), (897, 448)):
        assert best_grid(h, w, (448, 448), 1, 12) == get_optimal_tiled_canvas((h, w), (448, 448), 1, 12)


@pytest.mark.parametrize("bad,message", [(dict(size={"shortest_edge": 16}), "size"),
                                         (dict(min_patches=3, max_patches=2), "min_patches"),
                                         (dict(max_patches=0), "min_patches")])
def test_bad_configs_are_refused(bad, message):
    with pytest.raises(LlmarchError, match=message):
        processor_for({"image_processor_type": "GotOcr2ImageProcessor", **bad})
