"""Gemma4ImageProcessor's images from files (transformers' image_processing_pil_gemma4.py): each image, in RGB,
resized with its aspect ratio kept to the largest size whose sides are multiples of patch_size x pooling_kernel_size
and that holds at most max_soft_tokens x pooling_kernel_size^2 patches (get_aspect_ratio_preserving_size, with its
rule for sides that would round to 0); rescaled to [0, 1] (no normalization: the tower maps pixels to [-1, 1]
itself); cut into patch_size patches (row-major, channels last within a patch) and padded with zeros to that most
patches. Gives gemma4_tower.py's arguments: pixel_values (N, P, 3 p^2) float32 and image_sizes (N, 2), each resized
image's (height, width) in pixels, from which its patches' positions (transformers' image_position_ids) follow."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..errors import LlmarchError
from .preprocess import BICUBIC, PROCESSORS, ResizeCropNormalize

SOFT_TOKENS = (70, 140, 280, 560, 1120)  # the max_soft_tokens Gemma4ImageProcessor accepts


def aspect_preserving_size(height: int, width: int, patch: int, most: int, pooling: int) -> tuple[int, int]:
    """get_aspect_ratio_preserving_size: the largest (height, width), multiples of patch x pooling, of at most `most`
    patches with the image's aspect ratio; a side rounding to 0 is one multiple, the other its ratio's multiples."""
    factor = math.sqrt(most * patch ** 2 / (height * width))
    side = pooling * patch
    h, w = int(math.floor(factor * height / side)) * side, int(math.floor(factor * width / side)) * side
    if h == 0 and w == 0:
        raise LlmarchError(f"an image of {height}x{width} resizes to 0x0 for Gemma 4's tower")
    longest = (most // pooling ** 2) * side
    if h == 0:
        h, w = side, min(int(math.floor(width / height)) * side, longest)
    elif w == 0:
        h, w = min(int(math.floor(height / width)) * side, longest), side
    if h * w > most * patch ** 2:
        raise LlmarchError(f"an image of {height}x{width} resizes to {h}x{w}, past {most} patches of {patch}")
    return h, w


@dataclass(frozen=True)
class Gemma4Images:
    steps: ResizeCropNormalize  # RGB, rescale (and a normalization where a config asks for one); resized per image
    patch: int
    soft_tokens: int
    pooling: int

    @classmethod
    def from_config(cls, config: dict) -> Gemma4Images:
        c = {**_DEFAULTS, **{k: v for k, v in config.items() if v is not None}}
        if c["max_soft_tokens"] not in SOFT_TOKENS or not c["do_resize"]:
            raise LlmarchError(f"Gemma4ImageProcessor: max_soft_tokens {c['max_soft_tokens']!r} must be one of "
                               f"{SOFT_TOKENS}, with do_resize")
        return cls(ResizeCropNormalize.without_resize(c), int(c["patch_size"]), int(c["max_soft_tokens"]),
                   int(c["pooling_kernel_size"]))

    def __call__(self, images) -> dict:
        """PIL images -> pixel_values (N, P, 3 p^2) float32 and image_sizes (N, 2)."""
        p, most = self.patch, self.soft_tokens * self.pooling ** 2
        out, sizes = [], []
        for image in images:
            h, w = aspect_preserving_size(image.height, image.width, p, most, self.pooling)
            x = replace(self.steps, size={"height": h, "width": w}).one(image)  # (3, h, w)
            patches = x.reshape(3, h // p, p, w // p, p).transpose(1, 3, 2, 4, 0).reshape((h // p) * (w // p), -1)
            out.append(np.pad(patches, ((0, most - len(patches)), (0, 0))))
            sizes.append([h, w])
        return {"pixel_values": torch.from_numpy(np.stack(out)), "image_sizes": torch.tensor(sizes)}


# the class's defaults (transformers' Gemma4ImageProcessorPil)
_DEFAULTS = dict(do_convert_rgb=True, do_resize=True, resample=BICUBIC, do_rescale=True, rescale_factor=1 / 255,
                 do_normalize=False, image_mean=(0.0, 0.0, 0.0), image_std=(1.0, 1.0, 1.0), patch_size=16,
                 max_soft_tokens=280, pooling_kernel_size=3)
PROCESSORS.register("Gemma4ImageProcessor")(Gemma4Images.from_config)
