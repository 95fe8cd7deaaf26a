"""Pixtral's images from files (transformers' PixtralImageProcessorPil, which Mistral 3's checkpoints name) and
PixtralProcessor's prompt (Mistral 3's too; the tower is pixtral_tower.py). Each image, in RGB, is scaled down (never
up) to fit size's longest_edge, both sides floored, then each side rounded up to a whole number of the processor's
merged patch (its patch_size x spatial_merge_size, which PixtralProcessor passes the image processor over its own
patch_size), resized to that with the config's Pillow filter, rescaled and normalized (preprocess.py's steps); the
images are zero-padded at the bottom and right to the largest (transformers' do_pad), with image_sizes (N, 2) their
resized (height, width). In the prompt, each [IMG] becomes its image's rows of [IMG] per merged patch, each row ended
by [IMG_BREAK], the last by [IMG_END]."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..errors import LlmarchError
from .image_files import to_rgb
from .preprocess import (_BASE, BICUBIC, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PROCESSOR_FILE, PROCESSORS,
                         ResizeCropNormalize, side_config)

# PixtralImageProcessorPil's defaults, and PixtralProcessor's
_DEFAULTS = dict(_BASE, size={"longest_edge": 1024}, patch_size={"height": 16, "width": 16}, resample=BICUBIC,
                 image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD)
MARKERS = dict(image_token="[IMG]", image_break_token="[IMG_BREAK]", image_end_token="[IMG_END]")


@dataclass(frozen=True)
class PixtralImages:
    each: ResizeCropNormalize  # the RGB conversion, rescale and normalization
    longest: tuple[int, int] | None  # (max height, max width); None: no resize (do_resize off)
    patch: tuple[int, int]  # the (height, width) every side is rounded up to a multiple of

    @classmethod
    def from_config(cls, config: dict) -> PixtralImages:
        c = {**_DEFAULTS, **{k: v for k, v in config.items() if v is not None}}
        if c.get("do_center_crop"):
            raise LlmarchError(f"{config.get('image_processor_type')}: do_center_crop is not supported")
        size, patch = c["size"], c["patch_size"]
        patch = (patch, patch) if isinstance(patch, int) else (patch.get("height"), patch.get("width"))
        if "longest_edge" in size:
            longest = (size["longest_edge"],) * 2
        elif {"height", "width"} <= set(size):
            longest = (size["height"], size["width"])
        else:
            raise LlmarchError(f"PixtralImageProcessor size {size!r}: longest_edge, or height and width, only")
        if not all(isinstance(x, int) and x > 0 for x in (*longest, *patch)):
            raise LlmarchError(f"PixtralImageProcessor size {size!r} and patch_size {c['patch_size']!r} must be "
                               "positive integers")
        return cls(ResizeCropNormalize.without_resize(c), longest if c["do_resize"] else None, patch)

    def resized(self, height: int, width: int) -> tuple[int, int]:
        """get_resize_output_image_size: scaled (down only, floored) to fit, each side rounded up to patches."""
        ratio = max(height / self.longest[0], width / self.longest[1])
        if ratio > 1:
            height, width = int(math.floor(height / ratio)), int(math.floor(width / ratio))
        (ph, pw) = self.patch
        return ((height - 1) // ph + 1) * ph, ((width - 1) // pw + 1) * pw

    def __call__(self, images) -> dict:
        """PIL images -> the model's image arguments: pixel_values (N, 3, H, W) float32 padded with zeros to the
        largest, image_sizes (N, 2) each image's (height, width) within them."""
        out = []
        for image in images:
            image = to_rgb(image) if self.each.rgb else image
            size = None if self.longest is None else dict(zip(("height", "width"),
                                                              self.resized(image.height, image.width)))
            out.append(replace(self.each, size=size).one(image))
        H, W = max(a.shape[1] for a in out), max(a.shape[2] for a in out)
        padded = [np.pad(a, ((0, 0), (0, H - a.shape[1]), (0, W - a.shape[2]))) for a in out]
        return {"pixel_values": torch.from_numpy(np.stack(padded)),
                "image_sizes": torch.tensor([a.shape[1:] for a in out])}


def processor_fields(v, tok) -> dict:
    """PixtralProcessor's own fields (processor_config.json's top level): its image, break and end tokens and its
    merged patch, patch_size x spatial_merge_size (where the file names neither, the model's: the only layout its
    tower reads); a merged patch the model does not merge to is refused."""
    config = side_config(getattr(tok, "side_files", {}), PROCESSOR_FILE)
    patch, merge = config.get("patch_size", v.patch_size), config.get("spatial_merge_size", v.merge_size)
    if patch * merge != v.patch_size * v.merge_size:
        raise LlmarchError(f"{PROCESSOR_FILE} gives patch_size {patch} x spatial_merge_size {merge}; the model "
                           f"merges {v.merge_size} x {v.merge_size} patches of {v.patch_size}")
    return {**{k: config.get(k, d) for k, d in MARKERS.items()}, "merged": patch * merge}


def image_text(height: int, width: int, merged: int, markers: dict) -> str:
    """PixtralProcessor.replace_image_token: an image of (height, width) as rows of [IMG] per merged patch, each
    row ended by [IMG_BREAK], the last by [IMG_END]."""
    rows, cols = height // merged, width // merged
    row = markers["image_token"] * cols
    return markers["image_break_token"].join([row] * rows) + markers["image_end_token"]


PROCESSORS.register("PixtralImageProcessor")(PixtralImages.from_config)
