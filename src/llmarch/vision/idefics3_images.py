"""Idefics3's and SmolVLM's images from files (Idefics3ImageProcessor, SmolVLMImageProcessor, their PIL variants)
and prompt layout (Idefics3Processor, SmolVLMProcessor): each image, in RGB, resized with the config's Pillow filter
(Lanczos) to `size`'s longest edge (the other edge even), then up to whole multiples of the tile
(`max_image_size`'s longest edge) and, when it is larger than one tile, split into rows x cols tiles, row by row,
followed by the whole image resized to one tile (the global image); without do_image_splitting every image is
resized to one tile. Every tile then rescaled and normalized (preprocess.py's steps): all are tile x tile, so the
padding of transformers' batches (pixel_attention_mask) is all ones for one prompt. In the text each image token
becomes, per tile, <fake_token_around_image><row_r_col_c> and the tile's features' image tokens, a newline after
each row, then a newline, <fake_token_around_image><global-img>, the global image's tokens and
<fake_token_around_image>; an image read whole has the last part only."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import LlmarchError
from .image_files import to_rgb
from .preprocess import HALF, PROCESSORS, ResizeCropNormalize

FAKE, GLOBAL = "<fake_token_around_image>", "<global-img>"
LANCZOS = 1  # PIL.Image.Resampling.LANCZOS, the classes' default resample


@dataclass(frozen=True)
class SplitImages:
    longest: int | None  # size's longest_edge (do_resize), None: no first resize
    tile: int  # max_image_size's longest_edge
    split: bool  # do_image_splitting
    resample: int
    steps: ResizeCropNormalize  # RGB conversion, rescale and normalization (no resize or crop)

    @classmethod
    def from_config(cls, config: dict) -> SplitImages:
        c = {**_DEFAULTS, **{k: v for k, v in config.items() if v is not None}}
        size, tile = c["size"], c["max_image_size"]
        if not (isinstance(size, dict) and set(size) == {"longest_edge"} and isinstance(tile, dict)
                and set(tile) == {"longest_edge"}) or size["longest_edge"] >= 4096:
            raise LlmarchError(f"{config.get('image_processor_type')}: size {size!r} and max_image_size {tile!r} must "
                               "each be a longest_edge (the first under 4096)")
        steps = ResizeCropNormalize.without_resize(c)
        return cls(longest=int(size["longest_edge"]) if c["do_resize"] else None, tile=int(tile["longest_edge"]),
                   split=bool(c["do_image_splitting"]), resample=int(c["resample"]), steps=steps)

    def grid(self, image) -> tuple[int, int]:
        """(rows, cols) of tiles an image is split into; (0, 0): read whole (one tile, no split)."""
        if not self.split:
            return 0, 0
        height, width = image.height, image.width
        if self.longest is not None:
            height, width = _longest_edge(height, width, self.longest)
        return self._rows_cols(*self._split_size(height, width))

    def tiles(self, image) -> list:
        """One image's tiles, row by row, then the global image (PIL images)."""
        image = to_rgb(image) if self.steps.rgb else image
        if self.longest is not None:
            image = self._resize(image, *_longest_edge(image.height, image.width, self.longest))
        t = self.tile
        if not self.split:
            return [self._resize(image, t, t)]
        image = self._resize(image, *self._split_size(image.height, image.width))
        rows, cols = self._rows_cols(image.height, image.width)
        return [image.crop((c * t, r * t, c * t + t, r * t + t)) for r in range(rows) for c in range(cols)] + (
            [self._resize(image, t, t)] if rows else [image])

    def __call__(self, images) -> dict:
        """PIL images -> the model's image arguments (preprocess.py): pixel_values (tiles, 3, tile, tile) float32,
        each image's tiles then its global image."""
        return {"pixel_values": torch.from_numpy(np.stack([self.steps.one(t) for image in images
                                                            for t in self.tiles(image)]))}

    def _split_size(self, height: int, width: int) -> tuple[int, int]:
        """resize_for_vision_encoder's size: the longer edge up to whole tiles, the other scaled, then up too."""
        aspect, t = width / height, self.tile
        if width >= height:
            width = math.ceil(width / t) * t
            return math.ceil(int(width / aspect) / t) * t, width
        height = math.ceil(height / t) * t
        return height, math.ceil(int(height * aspect) / t) * t

    def _rows_cols(self, height: int, width: int) -> tuple[int, int]:
        """split_images' grid of an image of whole tiles: none where it is one tile."""
        return (height // self.tile, width // self.tile) if max(height, width) > self.tile else (0, 0)

    def _resize(self, image, height: int, width: int):
        return image.resize((width, height), resample=self.resample)


def _longest_edge(height: int, width: int, longest: int) -> tuple[int, int]:
    """The longest edge to `longest`, the other scaled, truncated and made even (at least 1)."""
    aspect = width / height
    if width >= height:
        width, height = longest, int(longest / aspect)
        height += height % 2
    else:
        height, width = longest, int(longest * aspect)
        width += width % 2
    return max(height, 1), max(width, 1)


def image_text(rows: int, cols: int, image: str, per: int) -> str:
    """One image's text: its tiles' and its global image's tokens (Idefics3Processor's replace_image_token)."""
    tiles = "".join("".join(f"{FAKE}<row_{r + 1}_col_{c + 1}>" + image * per for c in range(cols)) + "\n"
                    for r in range(rows))
    return (tiles + "\n" if rows else "") + FAKE + GLOBAL + image * per + FAKE


# the classes' defaults (transformers' Idefics3ImageProcessorPil and SmolVLMImageProcessorPil)
_DEFAULTS = dict(do_convert_rgb=True, do_resize=True, size={"longest_edge": 4 * 364}, resample=LANCZOS,
                 do_rescale=True, rescale_factor=1 / 255, do_normalize=True, image_mean=HALF, image_std=HALF,
                 do_image_splitting=True, max_image_size={"longest_edge": 364})
for _name in ("Idefics3ImageProcessor", "SmolVLMImageProcessor"):
    PROCESSORS.register(_name)(SplitImages.from_config)
