"""LLaVA-NeXT's AnyRes (Liu et al. 2024, "LLaVA-NeXT: Improved reasoning, OCR, and world knowledge"; the LLaVA-1.6
code's get_anyres_image_grid_shape, unpad_image and the packing transformers calls pack_image_features): an image of
size (H, W) is resized to the best of VisionConfig.grid_pinpoints (best_resolution), padded to it and cut into
rows x cols tiles of the tower's size, plus the whole image downscaled to one tile first. Every tile goes through the
tower and projector; the downscaled image's features come first as they are, then the tiles' feature grids joined
into one (rows * h, cols * w) grid, the padding's rows or columns cut off (unpad), and a learned newline vector after
each row. LLaVA-OneVision (VisionConfig.max_tiles, its anyres_max_N) first downscales an unpadded grid larger than N
tiles' (downscaled). The number of features of an image thus depends on its size (image_tokens; the counting
in anyres_grid.py). Shapes: a tile's features (P, C) with P = h * w patches."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import LlmarchError
from .anyres_grid import downscaled, grid, image_sizes_list, unpadded
from .inputs import ImageInputs


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
        packed = self.single_tiles(pixel_values[:, 0]) if pixel_values.shape[1] == 1 else \
            self.tiled(pixel_values, sizes)
        packed = packed.to(embeds.dtype)
        where = ids == v.image_token_id  # (B, T)
        if int(where.sum()) != packed.shape[0]:
            raise LlmarchError(f"images of sizes {sizes} give {packed.shape[0]} features; input_ids hold "
                               f"{int(where.sum())} image tokens (id {v.image_token_id})")
        return embeds.masked_scatter(where[..., None], packed)

    def tiled(self, pixel_values: torch.Tensor, sizes: list[tuple[int, int]]) -> torch.Tensor:
        """Each image's tiles (the downscaled whole, then its grid) -> all images' packed features (sum, C)."""
        grids = [grid(self.v, h, w) for h, w in sizes]
        counts = [rows * cols + 1 for rows, cols in grids]
        if max(counts) > pixel_values.shape[1]:
            raise LlmarchError(f"image_sizes {sizes} need {counts} tiles; pixel_values hold {pixel_values.shape[1]}")
        tiles = torch.cat([p[:n] for p, n in zip(pixel_values, counts)])  # (sum tiles, channels, S, S)
        features = self.projector(self.tower(tiles)).split(counts)  # each (tiles, P, C)
        return torch.cat([self.pack(f, rows, cols, size) for f, (rows, cols), size in zip(features, grids, sizes)])

    def single_tiles(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """LLaVA-OneVision's several images to a prompt: each one square-padded tile (N, channels, S, S), its P
        features then the newline, (N (P + 1), C). An AnyRes image has two tiles or more, so one tile an image marks
        this mode, as transformers' pack_image_features tells them apart."""
        f = self.projector(self.tower(pixel_values))  # (N, P, C)
        return torch.cat([f, self.newline.to(f.dtype).expand(f.shape[0], 1, f.shape[-1])], dim=1).flatten(0, 1)

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
