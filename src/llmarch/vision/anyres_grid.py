"""AnyRes's arithmetic (anyres.py): which grid of tiles an image of a given size is cut into, which of its features
the unpadding keeps, LLaVA-OneVision's downscaling under a budget of tiles, and so how many features an image gives.
Apart from anyres.py's module because config.py counts image tokens with it, and anyres.py imports the modules that
import config.py. `v` is a VisionConfig."""
from __future__ import annotations

import math

import torch

from ..errors import LlmarchError


def best_resolution(height: int, width: int, pinpoints: list) -> tuple[int, int]:
    """select_best_resolution: the (height, width) that keeps most of the image's pixels once it is scaled to fit,
    ties to the one that wastes least."""
    best, most, waste = None, 0, float("inf")
    for h, w in pinpoints:
        scale = min(w / width, h / height)
        kept = min(int(width * scale) * int(height * scale), width * height)
        if kept > most or (kept == most and h * w - kept < waste):
            best, most, waste = (h, w), kept, h * w - kept
    return best


def grid(v, height: int, width: int) -> tuple[int, int]:
    """(rows, cols) of tiles an image of (height, width) is cut into."""
    h, w = best_resolution(height, width, v.grid_pinpoints)
    return h // v.image_size, w // v.image_size


def unpadded(height: int, width: int, rows: int, cols: int) -> tuple[slice, slice]:
    """unpad_image: the rows and columns of a (rows, cols) feature grid the (height, width) image covers once it was
    scaled to fit and centred; the padding's, split evenly, cut (the same float rounding as transformers)."""
    if width / height > cols / rows:
        pad = (rows - int(round(height * (cols / width), 7))) // 2
        return slice(pad, rows - pad), slice(0, cols)
    pad = (cols - int(round(width * (rows / height), 7))) // 2
    return slice(0, rows), slice(pad, cols - pad)


def downscaled(v, rows: int, cols: int) -> tuple[int, int] | None:
    """The (rows, cols) an unpadded (rows, cols) feature grid is bilinearly resized to under max_tiles: scaled by
    1 / ratio, ratio the square root of its area over max_tiles tiles' patches, once ratio > 1.1 (LLaVA-OneVision's
    pack_image_features, floors as it takes them); None: kept as it is."""
    if v.max_tiles is None:
        return None
    ratio = math.sqrt(rows * cols / (v.max_tiles * v.n_patches))
    return (int(rows // ratio), int(cols // ratio)) if ratio > 1.1 else None


def image_tokens(v, height: int, width: int) -> int:
    """Features of an image of (height, width): the downscaled image's, then the unpadded grid's (downscaled under
    max_tiles) with a newline after each row."""
    side = v.image_size // v.patch_size
    rows, cols = grid(v, height, width)
    r, c = unpadded(height, width, rows * side, cols * side)
    h, w = downscaled(v, r.stop - r.start, c.stop - c.start) or (r.stop - r.start, c.stop - c.start)
    return v.n_patches + h * (w + 1)


def image_sizes_list(image_sizes, n: int) -> list[tuple[int, int]]:
    """image_sizes (N, 2) (a tensor or pairs) as N (height, width) pairs of positive ints."""
    sizes = image_sizes.tolist() if isinstance(image_sizes, torch.Tensor) else list(image_sizes)
    if len(sizes) != n or any(len(s) != 2 or min(s) <= 0 for s in sizes):
        raise LlmarchError(f"image_sizes must give (height, width) for each of the {n} image(s), got {sizes}")
    return [(int(h), int(w)) for h, w in sizes]
