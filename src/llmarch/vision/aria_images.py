"""Aria's image processor (transformers' AriaImageProcessorPil; Rhymes AI 2024, arXiv 2410.05993, \u00a73.1): each
image, in RGB, is one crop or, with split_image, the crops of it resized and centred on the best of split_resolutions
(LLaVA-NeXT's select_best_resolution: anyres_pixels.cut_tiles) cut max_image_size square. Each crop is resized so
that its longer side is max_image_size and the other int(side x scale) but no less than min_image_size (the wider
side wins a tie), padded with zeros at the bottom and right to a max_image_size square, pixel_attention_mask true on
its resized pixels, then rescaled and normalized (preprocess.py's steps). Each crop becomes patch_queries' count of
features (vision/config.py); AriaProcessor gives every image its crops' count of image tokens."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import LlmarchError
from .anyres_pixels import cut_tiles
from .image_files import to_rgb
from .preprocess import _BASE, BICUBIC, HALF, ResizeCropNormalize

# AriaImageProcessorPil's split_resolutions by default, in units of 490 pixels (height, width)
_SPLITS = [(1, 2), (1, 3), (1, 4), (1, 5), (1, 6), (1, 7), (1, 8), (2, 4), (2, 3), (2, 2), (2, 1), (3, 1), (3, 2),
           (4, 1), (4, 2), (5, 1), (6, 1), (7, 1), (8, 1)]


@dataclass(frozen=True)
class AriaImages:
    side: int  # max_image_size: 490 or 980
    least: int  # min_image_size
    split: bool  # split_image
    resolutions: list  # split_resolutions, [height, width] pairs
    resample: int
    steps: ResizeCropNormalize  # RGB conversion, rescale and normalization (no resize or crop)

    @classmethod
    def from_config(cls, config: dict) -> AriaImages:
        c = {**_DEFAULTS, **{k: v for k, v in config.items() if v is not None}}
        if c["max_image_size"] not in (490, 980):  # as the class refuses any other
            raise LlmarchError(f"AriaImageProcessor: max_image_size {c['max_image_size']!r} must be 490 or 980")
        if not isinstance(c["min_image_size"], int) or not 0 < c["min_image_size"] <= c["max_image_size"]:
            raise LlmarchError(f"AriaImageProcessor: min_image_size {c['min_image_size']!r} must be a positive "
                               "integer, at most max_image_size")
        return cls(side=c["max_image_size"], least=c["min_image_size"], split=bool(c["split_image"]),
                   resolutions=[list(r) for r in c["split_resolutions"] or [[h * 490, w * 490] for h, w in _SPLITS]],
                   resample=int(c["resample"]), steps=ResizeCropNormalize.without_resize(c))

    def crops(self, image) -> list:
        """One PIL image's crops (itself, without split_image), in RGB."""
        image = to_rgb(image) if self.steps.rgb else image
        return cut_tiles(image, self.resolutions, self.side, self.resample) if self.split else [image]

    def one(self, crop) -> tuple[np.ndarray, np.ndarray]:
        """A crop -> its pixels (3, side, side) and its real pixels (side, side)."""
        scale = self.side / max(crop.height, crop.width)
        if crop.width >= crop.height:
            h, w = max(int(crop.height * scale), self.least), self.side
        else:
            h, w = self.side, max(int(crop.width * scale), self.least)
        from PIL import Image

        canvas = Image.new(crop.mode, (self.side, self.side))  # black: transformers pads with zeros, then rescales
        canvas.paste(crop.resize((w, h), resample=self.resample), (0, 0))
        mask = np.zeros((self.side, self.side), dtype=bool)
        mask[:h, :w] = True
        return self.steps.one(canvas), mask

    def __call__(self, images) -> dict:
        """PIL images -> the model's image arguments (preprocess.py): pixel_values (crops, 3, side, side) float32 and
        pixel_attention_mask (crops, side, side) bool, each image's crops in turn."""
        out = [self.one(crop) for image in images for crop in self.crops(image)]
        return {"pixel_values": torch.from_numpy(np.stack([p for p, _ in out])),
                "pixel_attention_mask": torch.from_numpy(np.stack([m for _, m in out]))}


# the class's defaults (transformers' AriaImageProcessorPil; AriaProcessor calls it with max_image_size 980 and
# split_image off: interop/aria.py's layout); registered in PROCESSORS by interop/aria.py
_DEFAULTS = dict(_BASE, resample=BICUBIC, image_mean=HALF, image_std=HALF, max_image_size=980, min_image_size=336,
                 split_image=False, split_resolutions=None)
