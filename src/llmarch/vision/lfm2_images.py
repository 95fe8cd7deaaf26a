"""Lfm2VlImageProcessor's images from files (LFM2-VL's; transformers 5.25 has it only as a torchvision processor,
image_processing_lfm2_vl.py, followed here on torch tensors as cohere2_images.py does). Each image, in RGB as uint8,
is smart-resized (both sides multiples of encoder_patch_size x downsample_factor, between min_image_tokens and
max_image_tokens features); an image whose rounded size exceeds max_image_tokens times max_pixels_tolerance is
instead resized to the grid of min_tiles..max_tiles square tiles of tile_size closest to its aspect ratio (ties to
the larger grid while the image's area exceeds half of it), cut row by row, and followed by the smart-resized image
as a thumbnail. Resizing is antialiased bilinear as torchvision runs it on the CPU; then the fused rescale and
normalization; each piece cut into encoder_patch_size patches (row-major, channels last within a patch) and padded
with zeros to the most patches any piece can have. Gives naflex.py's arguments: pixel_values (pieces, P, 3 p^2)
and image_sizes (pieces, 2), each piece's (height, width) in pixels."""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

from ..errors import LlmarchError
from .cohere2_images import normalized, resized, rgb_tensor
from .preprocess import BILINEAR, HALF, PROCESSORS, ResizeCropNormalize
from .tiled_images import best_grid

MODES = {BILINEAR: "bilinear", 3: "bicubic"}


@lru_cache(maxsize=16)
def _grids(lo: int, hi: int) -> list[tuple[int, int]]:
    """Lfm2VlImageProcessor._target_ratios: the (cols, rows) of lo..hi tiles, by count, in the order its set of them
    iterates (which breaks its ties)."""
    found = {(w, h) for n in range(lo, hi + 1) for w in range(1, n + 1) for h in range(1, n + 1) if lo <= w * h <= hi}
    return sorted(found, key=lambda g: g[0] * g[1])


@dataclass(frozen=True)
class Lfm2Images:
    c: dict  # the config over the class's defaults
    steps: ResizeCropNormalize  # RGB conversion, rescale and normalization (no resize or crop)

    @classmethod
    def from_config(cls, config: dict) -> Lfm2Images:
        c = {**_DEFAULTS, **{k: v for k, v in config.items() if v is not None}}
        if c["resample"] not in MODES:
            raise LlmarchError(f"Lfm2VlImageProcessor: resample {c['resample']!r} is not supported; supported: "
                               f"{', '.join(map(str, MODES))}")
        if not c["do_pad"]:  # unpadded pieces of different sizes do not batch
            raise LlmarchError("Lfm2VlImageProcessor: do_pad false is not supported")
        if not c["do_image_splitting"]:
            c.update(min_tiles=1, max_tiles=1)
        if c["min_tiles"] > c["max_tiles"]:
            raise LlmarchError(f"Lfm2VlImageProcessor: min_tiles {c['min_tiles']} exceeds max_tiles {c['max_tiles']}")
        return cls(c=c, steps=ResizeCropNormalize.without_resize(c))

    def smart_size(self, height: int, width: int) -> tuple[int, int]:
        """smart_resize: (height, width) multiples of p s holding between min and max image tokens' pixels."""
        c, f = self.c, self.c["encoder_patch_size"] * self.c["downsample_factor"]
        lo, hi = (c[k] * f * f for k in ("min_image_tokens", "max_image_tokens"))
        h, w = max(f, round(height / f) * f), max(f, round(width / f) * f)
        if h * w > hi:
            beta = math.sqrt(height * width / hi)
            h, w = max(f, math.floor(height / beta / f) * f), max(f, math.floor(width / beta / f) * f)
        elif h * w < lo:
            beta = math.sqrt(lo / (height * width))
            h, w = math.ceil(height * beta / f) * f, math.ceil(width * beta / f) * f
        return h, w

    def layout(self, height: int, width: int) -> tuple[int, int, tuple[int, int]]:
        """(rows, cols) of tiles (1, 1: not split) and the smart-resized (height, width) (the thumbnail's)."""
        c, p = self.c, self.c["encoder_patch_size"]
        f = p * c["downsample_factor"]
        h, w = max(p, round(height / f) * f), max(p, round(width / f) * f)
        large = h * w > c["max_image_tokens"] * f * f * c["max_pixels_tolerance"]
        split = large and not c["min_tiles"] == c["max_tiles"] == 1
        t = c["tile_size"]
        lo, hi = c["min_tiles"], c["max_tiles"]
        cols, rows = best_grid(height, width, (t, t), lo, hi, _grids(lo, hi)) if split else (1, 1)
        return rows, cols, self.smart_size(height, width)

    def pieces(self, image) -> list[torch.Tensor]:
        """One image's uint8 (3, h, w) pieces: its tiles row by row and the thumbnail, or the image resized."""
        x = rgb_tensor(image, self.steps.rgb)
        rows, cols, (h, w) = self.layout(*x.shape[1:])
        mode, t = MODES[self.c["resample"]], self.c["tile_size"]
        if rows * cols == 1:
            return [resized(x, h, w, mode)]
        canvas = resized(x, t * rows, t * cols, mode)
        tiles = [canvas[:, r * t:(r + 1) * t, k * t:(k + 1) * t] for r in range(rows) for k in range(cols)]
        return tiles + ([resized(x, h, w, mode)] if self.c["use_thumbnail"] else [])

    def __call__(self, images) -> dict:
        """PIL images -> pixel_values (pieces, P, 3 p^2) float32 and image_sizes (pieces, 2)."""
        c, p = self.c, self.c["encoder_patch_size"]
        most = max(c["max_image_tokens"] * c["downsample_factor"] ** 2,
                   (c["tile_size"] // p) ** 2 if c["do_image_splitting"] else 0)
        out, sizes = [], []
        for piece in (q for image in images for q in self.pieces(image)):
            x = normalized(piece, self.steps)  # (3, h, w)
            h, w = x.shape[1] // p, x.shape[2] // p
            patches = x.reshape(3, h, p, w, p).permute(1, 3, 2, 4, 0).reshape(h * w, -1)
            out.append(torch.cat([patches, patches.new_zeros(most - h * w, patches.shape[1])]))
            sizes.append([h * p, w * p])
        return {"pixel_values": torch.stack(out), "image_sizes": torch.tensor(sizes)}


# the class's defaults (transformers' Lfm2VlImageProcessor)
_DEFAULTS = dict(do_convert_rgb=True, resample=BILINEAR, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                 image_mean=HALF, image_std=HALF, downsample_factor=2, do_image_splitting=True, min_tiles=2,
                 max_tiles=10, use_thumbnail=True, min_image_tokens=64, max_image_tokens=256, encoder_patch_size=16,
                 tile_size=512, max_pixels_tolerance=2.0, do_pad=True)
PROCESSORS.register("Lfm2VlImageProcessor")(Lfm2Images.from_config)
