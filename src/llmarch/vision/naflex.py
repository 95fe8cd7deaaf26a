"""SigLIP 2's NaFlex tower (Tschannen et al. 2025, "SigLIP 2", \u00a72.4.2: images at their native aspect ratio, a
varying number of patches) as LFM2-VL reads it (VisionConfig.naflex): pixel_values come patchified as transformers'
processor gives them, (N, max_patches, channels p^2), each image's h x w patches first in row-major order and
padding after; a linear patch embedding; the learned square grid of positions resized to each image's h x w
(bilinear, antialiased, as transformers' Siglip2VisionEmbeddings); padded patches masked out as keys; SigLIP's blocks
and post-norm. Each image's grid is then pixel-shuffled on its own by shuffle_factor (LFM2-VL's pixel unshuffle:
h and w must divide by it) and the projector maps the shuffled features. image_sizes (N, 2) give each image's
(height, width) in pixels, transformers' spatial_shapes times patch_size. Shapes: N images, P patches, C width."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from ..errors import LlmarchError
from ..layers.linear import Linear
from .anyres_grid import image_sizes_list
from .inputs import ImageInputs
from .projector import pixel_shuffle
from .tower import VisionTower


class NaFlexTower(VisionTower):
    def __init__(self, v):
        super().__init__(v)
        self.patch = Linear(v.channels * v.patch_size ** 2, v.width, bias=v.patch_bias)

    def forward(self, pixel_values: torch.Tensor, grids: list[tuple[int, int]]) -> torch.Tensor:
        """pixel_values (N, P, channels p^2), grids each image's (h, w) patches -> (N, P, C), padding included."""
        n, P, _ = pixel_values.shape
        x = self.patch(pixel_values.to(self.patch.weight.dtype))  # (N, P, C)
        side = self.v.image_size // self.v.patch_size
        grid = self.positions.weight.reshape(side, side, -1).permute(2, 0, 1)[None].float()  # (1, C, side, side)
        positions, real = torch.zeros_like(x), torch.zeros(n, P, dtype=torch.bool, device=x.device)
        for i, (h, w) in enumerate(grids):
            resized = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
            positions[i, :h * w] = resized[0].flatten(1).transpose(0, 1).to(x.dtype)
            real[i, :h * w] = True
        mask = None if bool(real.all()) else real[:, None, None, :]
        return self.encode(x + positions, mask)


class NaFlexImageInputs(ImageInputs):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.tower = NaFlexTower(self.v)

    def forward(self, embeds: torch.Tensor, ids: torch.Tensor, pixel_values: torch.Tensor,
                pixel_mask: torch.Tensor | None = None, image_sizes=None) -> torch.Tensor:
        """embeds (B, T, C') of ids (B, T); pixel_values (N, P, channels p^2), image_sizes (N, 2) (pixel_mask
        (N, P), transformers' pixel_attention_mask, if given, must be their first h w patches) -> embeds with each
        image's h w / s^2 features at the image-token positions, in order."""
        v, p, s = self.v, self.v.patch_size, self.v.shuffle_factor
        if pixel_values.dim() != 3 or pixel_values.shape[-1] != v.channels * p * p or image_sizes is None:
            raise LlmarchError(f"a NaFlex tower reads patchified pixel_values (images, patches, {v.channels * p * p}) "
                               f"and image_sizes (images, 2); got {tuple(pixel_values.shape)}"
                               f"{'' if image_sizes is not None else ' without image_sizes'}")
        n, P = pixel_values.shape[:2]
        sizes = image_sizes_list(image_sizes, n)
        if any(h % (p * s) or w % (p * s) or h * w > P * p * p or not h * w for h, w in sizes):
            raise LlmarchError(f"image_sizes {sizes} must be positive multiples of patch_size x shuffle_factor "
                               f"{p * s} holding at most the {P} patches of pixel_values")
        grids = [(h // p, w // p) for h, w in sizes]
        if pixel_mask is not None and not torch.equal(
                pixel_mask.bool().cpu(), torch.arange(P)[None] < torch.tensor([h * w for h, w in grids])[:, None]):
            raise LlmarchError(f"pixel_attention_mask must be ({n}, {P}), 1 on each image's first h w patches")
        out = self.tower(pixel_values, grids)  # (N, P, C)
        features = torch.cat([pixel_shuffle(out[i:i + 1, :h * w], s, h)[0] for i, (h, w) in enumerate(grids)])
        return self.scatter(embeds, ids, self.projector(features)[None])
