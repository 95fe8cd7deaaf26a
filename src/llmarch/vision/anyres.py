"""LLaVA-NeXT's AnyRes (Liu et al. 2024, "LLaVA-NeXT: Improved reasoning, OCR, and world knowledge"; the LLaVA-1.6
code's get_anyres_image_grid_shape, unpad_image and the packing transformers calls pack_image_features): an image of
size (H, W) is resized to the best of VisionConfig.grid_pinpoints (best_resolution), padded to it and cut into
rows x cols tiles of the tower's size, plus the whole image downscaled to one tile first. Every tile goes through the
tower and projector; the downscaled image's features come first as they are, then the tiles' feature grids joined
into one (rows * h, cols * w) grid, the padding's rows or columns cut off (unpad), and a learned newline vector after
each row. LLaVA-OneVision (VisionConfig.max_tiles, its anyres_max_N) first downscales an unpadded grid larger than N
tiles' (downscaled). The number of features of an image thus depends on its size (image_tokens). Shapes: a tile's
features (P, C) with P = h * w patches."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import LlmarchError
from .config import VisionConfig
from .inputs import ImageInputs


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


def grid(v: VisionConfig, height: int, width: int) -> tuple[int, int]:
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


def downscaled(v: VisionConfig, rows: int, cols: int) -> tuple[int, int] | None:
    """The (rows, cols) an unpadded (rows, cols) feature grid is bilinearly resized to under max_tiles: scaled by
    1 / ratio, ratio the square root of its area over max_tiles tiles' patches, once ratio > 1.1 (LLaVA-OneVision's
    pack_image_features, floors as it takes them); None: kept as it is."""
    if v.max_tiles is None:
        return None
    ratio = math.sqrt(rows * cols / (v.max_tiles * v.n_patches))
    return (int(rows // ratio), int(cols // ratio)) if ratio > 1.1 else None


def image_tokens(v: VisionConfig, height: int, width: int) -> int:
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


class AnyResImageInputs(ImageInputs):
    """ImageInputs for AnyRes images: pixel_values (N, max tiles, channels, S, S), each image's tiles first (the
    downscaled image, then row by row), zeros after them, with image_sizes (N, 2) their (height, width)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.newline = nn.Parameter(torch.zeros(cfg.d_model))  # LLaVA-NeXT's image_newline

    def forward(self, embeds: torch.Tensor, ids: torch.Tensor, pixel_values: torch.Tensor,
                pixel_mask: torch.Tensor | None = None, image_sizes=None) -> torch.Tensor:
        v = self.v
        if pixel_mask is not None:
            raise LlmarchError("a pixel mask is for a tower with position_buckets (Idefics3's), not AnyRes tiles")
        if image_sizes is None:
            raise LlmarchError("AnyRes images (vision grid_pinpoints) need image_sizes, each image's (height, width)")
        if pixel_values.dim() != 5:
            raise LlmarchError(f"AnyRes pixel_values must have shape (images, tiles, {v.channels}, {v.image_size}, "
                               f"{v.image_size}), got {tuple(pixel_values.shape)}")
        sizes = image_sizes_list(image_sizes, pixel_values.shape[0])
        grids = [grid(v, h, w) for h, w in sizes]
        counts = [rows * cols + 1 for rows, cols in grids]
        if max(counts) > pixel_values.shape[1]:
            raise LlmarchError(f"image_sizes {sizes} need {counts} tiles; pixel_values hold {pixel_values.shape[1]}")
        tiles = torch.cat([p[:n] for p, n in zip(pixel_values, counts)])  # (sum tiles, channels, S, S)
        features = self.projector(self.tower(tiles)).to(embeds.dtype).split(counts)  # each (tiles, P, C)
        packed = torch.cat([self.pack(f, rows, cols, size) for f, (rows, cols), size in zip(features, grids, sizes)])
        where = ids == v.image_token_id  # (B, T)
        if int(where.sum()) != packed.shape[0]:
            raise LlmarchError(f"images of sizes {sizes} give {packed.shape[0]} features; input_ids hold "
                               f"{int(where.sum())} image tokens (id {v.image_token_id})")
        return embeds.masked_scatter(where[..., None], packed)

    def pack(self, f: torch.Tensor, rows: int, cols: int, size: tuple[int, int]) -> torch.Tensor:
        """One image's tile features f (1 + rows * cols, P, C) -> its (image_tokens, C) features."""
        side, c = self.v.image_size // self.v.patch_size, f.shape[-1]
        g = f[1:].view(rows, cols, side, side, c).permute(0, 2, 1, 3, 4).reshape(rows * side, cols * side, c)
        r, k = unpadded(*size, rows * side, cols * side)
        g = g[r, k]  # (H', W', C)
        small = downscaled(self.v, *g.shape[:2])
        if small is not None:  # bilinear, half-pixel centres (align_corners=False), as transformers' interpolate
            g = nn.functional.interpolate(g.permute(2, 0, 1)[None], list(small), mode="bilinear")[0].permute(1, 2, 0)
        g = torch.cat([g, self.newline.to(g.dtype).expand(g.shape[0], 1, c)], dim=1)  # (H', W' + 1, C)
        return torch.cat([f[0], g.reshape(-1, c)])
