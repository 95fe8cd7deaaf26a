"""Idefics2's and Idefics3's patch positions for images of any size (VisionConfig.position_buckets), after NaViT
(Dehghani et al. 2023, "Patch n' Pack", \u00a73.1, fractional positions): an image of h x w real patches (the rest
of its grid padding, pixel_attention_mask 0) places patch (i, j) at the learned position of grid cell
(bucket(i / h), bucket(j / w)), bucket counting how many of the grid's side boundaries 1/n, 2/n ... lie at or below
the fraction; padded patches take position 0 and are masked out as keys. Computed in float32 as transformers does,
so that a fraction on a boundary lands where its rounding puts it. Shapes: N images, grid (h', w') of patches."""
from __future__ import annotations

import torch

from ..errors import LlmarchError


def patch_mask(pixel_mask: torch.Tensor | None, shape: tuple, patch_size: int, whole: bool = False) -> torch.Tensor:
    """pixel_mask (N, H, W), 1 on real pixels (None: all real) -> bool (N, h', w'): patches with any real pixel
    (Idefics3's), or with `whole` only those whose every pixel is real (Idefics2's)."""
    n, _, height, width = shape
    if (height % patch_size or width % patch_size) and not whole:  # Idefics2's sizes: the remainder dropped
        raise LlmarchError(f"pixel_values' height and width {height} x {width} must divide by patch_size {patch_size}")
    if pixel_mask is None:
        return torch.ones(n, height // patch_size, width // patch_size, dtype=torch.bool)
    if tuple(pixel_mask.shape) != (n, height, width):
        raise LlmarchError(f"pixel_attention_mask must have shape {(n, height, width)}, got {tuple(pixel_mask.shape)}")
    blocks = pixel_mask.unfold(1, patch_size, patch_size).unfold(2, patch_size, patch_size)  # (N, h', w', p, p)
    real = blocks.sum(dim=(-1, -2))
    return real == patch_size * patch_size if whole else real > 0


def bucket_positions(mask: torch.Tensor, side: int) -> torch.Tensor:
    """mask bool (N, h', w') of real patches -> (N, h' w') indices into the side x side grid of learned positions."""
    n, rows, cols = mask.shape
    boundaries = torch.arange(1 / side, 1.0, 1 / side, device=mask.device)
    real_h, real_w = mask[:, :, 0].sum(dim=1), mask[:, 0, :].sum(dim=1)  # (N,) real patches down, across

    def buckets(count: int, real: torch.Tensor) -> torch.Tensor:  # (N, count) grid rows (or columns)
        fractions = torch.arange(count, device=mask.device, dtype=torch.float32)[None, :] * (1.0 / real)[:, None]
        return torch.bucketize(fractions.clamp(max=1.0 - 1e-6), boundaries, right=True)

    ids = buckets(rows, real_h)[:, :, None] * side + buckets(cols, real_w)[:, None, :]  # (N, h', w')
    return torch.where(mask, ids, 0).reshape(n, -1)
