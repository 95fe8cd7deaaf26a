"""GotOcr2ImageProcessor's images from files (transformers' GotOcr2ImageProcessorPil; InternVL's checkpoints name it,
and InternVLProcessor always calls it with crop_to_patches; after InternVL 1.5's dynamic high resolution, Chen et al.
2024, "How Far Are We to GPT-4V?", \u00a73.2): with crop_to_patches and max_patches > 1, each image, in RGB, is resized
with the config's Pillow filter to the grid of cols x rows tiles (min_patches <= cols rows <= max_patches) whose
aspect ratio is closest to the image's (ties to the larger grid while the image's area exceeds half the grid's), cut
into those tiles row by row and, when there is more than one, followed by the whole image resized to one tile (the
thumbnail); otherwise each image is resized to one tile. Every tile is then rescaled and normalized (preprocess.py's
steps)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from ..errors import LlmarchError
from .image_files import to_rgb
from .preprocess import BICUBIC, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PROCESSORS, ResizeCropNormalize


@lru_cache(maxsize=16)
def grids(min_tiles: int, max_tiles: int) -> list[tuple[int, int]]:
    """get_all_supported_aspect_ratios: every (cols, rows) of min..max tiles, by tile count (a stable sort)."""
    sides = range(1, max_tiles + 1)
    found = [(c, r) for c in sides for r in sides if min_tiles <= c * r <= max_tiles]
    return sorted(found, key=lambda g: g[0] * g[1])


def best_grid(height: int, width: int, tile: tuple[int, int], min_tiles: int, max_tiles: int,
              candidates: list[tuple[int, int]] | None = None) -> tuple[int, int]:
    """get_optimal_tiled_canvas: the (cols, rows) whose aspect ratio is closest to width / height; on a tie the later
    (larger) grid where the image's area exceeds half of it. `candidates`: the grids in another order than grids'."""
    aspect, area, best, best_diff = width / height, width * height, (1, 1), float("inf")
    for cols, rows in candidates or grids(min_tiles, max_tiles):
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best, best_diff = (cols, rows), diff
        elif diff == best_diff and area > 0.5 * tile[0] * tile[1] * cols * rows:
            best = (cols, rows)
    return best


@dataclass(frozen=True)
class TiledImages:
    tile: tuple[int, int]  # size: (height, width)
    crop: bool  # crop_to_patches (and max_patches > 1)
    min_tiles: int
    max_tiles: int
    resize: bool  # do_resize, for an image read whole (the tiles are always resized)
    resample: int
    steps: ResizeCropNormalize  # RGB conversion, rescale and normalization (no resize or crop)

    @classmethod
    def from_config(cls, config: dict) -> TiledImages:
        c = {**_DEFAULTS, **{k: v for k, v in config.items() if v is not None}}
        size, lo, hi = c["size"], c["min_patches"], c["max_patches"]
        if not (isinstance(size, dict) and set(size) == {"height", "width"}
                and all(isinstance(x, int) and x > 0 for x in size.values())):
            raise LlmarchError(f"{config.get('image_processor_type')}: size {size!r} must be a positive height and "
                               "width")
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (lo, hi)) or not 1 <= lo <= hi:
            raise LlmarchError(f"{config.get('image_processor_type')}: min_patches {lo!r} and max_patches {hi!r} must "
                               "be integers, 1 <= min_patches <= max_patches")
        steps = ResizeCropNormalize.without_resize(c)
        return cls(tile=(size["height"], size["width"]), crop=bool(c["crop_to_patches"]) and hi > 1, min_tiles=lo,
                   max_tiles=hi, resize=bool(c["do_resize"]), resample=int(c["resample"]), steps=steps)

    def count(self, image) -> int:
        """The tiles one image becomes (get_number_of_image_patches): its grid's, and a thumbnail beside several."""
        if not self.crop:
            return 1
        cols, rows = best_grid(image.height, image.width, self.tile, self.min_tiles, self.max_tiles)
        return cols * rows + (cols * rows > 1)

    def tiles(self, image) -> list:
        """One image's tiles (PIL images), row by row, then the thumbnail where there are several."""
        image = to_rgb(image) if self.steps.rgb else image
        (h, w), resample = self.tile, self.resample
        if not self.crop:
            return [image.resize((w, h), resample=resample) if self.resize else image]
        cols, rows = best_grid(image.height, image.width, self.tile, self.min_tiles, self.max_tiles)
        canvas = image.resize((w * cols, h * rows), resample=resample)
        tiles = [canvas.crop((c * w, r * h, c * w + w, r * h + h)) for r in range(rows) for c in range(cols)]
        return tiles + ([image.resize((w, h), resample=resample)] if len(tiles) > 1 else [])

    def __call__(self, images) -> dict:
        """PIL images -> the model's image arguments (preprocess.py): pixel_values (tiles, 3, height, width) float32,
        each image's tiles in turn."""
        out = [self.steps.one(t) for image in images for t in self.tiles(image)]
        if len({a.shape for a in out}) > 1:
            raise LlmarchError(f"the images preprocess to different sizes {sorted({a.shape for a in out})}")
        return {"pixel_values": torch.from_numpy(np.stack(out))}


# the class's defaults (transformers' GotOcr2ImageProcessorPil)
_DEFAULTS = dict(do_convert_rgb=True, do_resize=True, size={"height": 384, "width": 384}, resample=BICUBIC,
                 do_rescale=True, rescale_factor=1 / 255, do_normalize=True, image_mean=OPENAI_CLIP_MEAN,
                 image_std=OPENAI_CLIP_STD, crop_to_patches=False, min_patches=1, max_patches=12)
PROCESSORS.register("GotOcr2ImageProcessor")(TiledImages.from_config)
