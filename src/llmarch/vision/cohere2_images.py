"""Cohere2VisionImageProcessor's images from files (Command A Vision's; transformers 5.25 has it only as a
torchvision processor, image_processing_cohere2_vision.py, which this follows operation for operation on torch
tensors, so that the pixels are equal to its): each image, in RGB (as the PIL processors convert it), becomes a
uint8 (3, H, W) tensor; with crop_to_patches (the class's default) it is resized to the grid of cols x rows tiles
(cols rows <= max_patches; min_patches is not read) that needs the least upscaling to hold it, or where every grid
must shrink it, the least downscaling (Llama 4's canvas choice), cut into its tiles row by row and, where there are
several, followed by the whole image resized to one tile (the thumbnail); otherwise it is resized to one tile.
Resizing is torch's antialiased bicubic interpolation on the uint8 pixels, as torchvision does on the CPU; then
rescale and normalization fused as transformers fuses them: (x - mean / r) / (std / r) in float32."""
from __future__ import annotations

import platform
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import LlmarchError
from .image_files import to_rgb
from .preprocess import BICUBIC, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PROCESSORS, ResizeCropNormalize
from .tiled_images import grids


def canvas_grid(height: int, width: int, tile: int, max_tiles: int) -> tuple[int, int]:
    """get_optimal_tiled_canvas (Cohere2's): the (cols, rows) of at most max_tiles tiles of side `tile` whose
    smaller scale to hold the image is the least at or above 1, or where all are below 1, the largest."""
    candidates = grids(1, max_tiles)  # get_all_supported_aspect_ratios by tile count, as GotOcr2's
    scales = [min(c * tile / width, r * tile / height) for c, r in candidates]
    if all(s < 1 for s in scales):
        return candidates[scales.index(max(scales))]
    up = [s if s >= 1 else 10e9 for s in scales]
    return candidates[up.index(min(up))]


def rgb_tensor(image, convert: bool) -> torch.Tensor:
    """A PIL image as the torchvision processors read it: uint8 (3, H, W), converted to RGB where `convert`
    (do_convert_rgb), else refused unless already RGB."""
    image = to_rgb(image) if convert else image
    if image.mode != "RGB":
        raise LlmarchError(f"an image of mode {image.mode}, and the image processor does not convert to RGB")
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).contiguous()


def resized(x: torch.Tensor, height: int, width: int, mode: str = "bicubic") -> torch.Tensor:
    """torchvision's resize_image of uint8 (..., 3, H, W) images, antialiased, on the CPU (the same images when the
    size does not change): torch's own uint8 interpolation where torchvision uses it (bicubic; bilinear on AVX2,
    AVX-512 and ARM CPUs), else in float32, rounded back to uint8."""
    if tuple(x.shape[-2:]) == (height, width):
        return x
    native = mode == "bicubic" or (torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
                                   or platform.machine() in ("aarch64", "arm64"))
    y = F.interpolate((x if native else x.float()).reshape(-1, *x.shape[-3:]), size=[height, width], mode=mode,
                      align_corners=False, antialias=True)
    return (y if native else y.round_().to(torch.uint8)).reshape(*x.shape[:-2], height, width)


@dataclass(frozen=True)
class Cohere2Images:
    tile: tuple[int, int]  # size: (height, width)
    crop: bool  # crop_to_patches
    max_tiles: int
    resize: bool  # do_resize
    patch_size: int  # the feature grid's side on one tile, which Cohere2VisionProcessor reads: patch_size^2 tokens
    steps: ResizeCropNormalize  # RGB conversion, rescale and normalization (no resize or crop)

    @classmethod
    def from_config(cls, config: dict) -> Cohere2Images:
        c = {**_DEFAULTS, **{k: v for k, v in config.items() if v is not None}}
        size, hi, kind = c["size"], c["max_patches"], config.get("image_processor_type")
        if not (isinstance(size, dict) and set(size) == {"height", "width"}
                and all(isinstance(x, int) and x > 0 for x in size.values())):
            raise LlmarchError(f"{kind}: size {size!r} must be a positive height and width")
        if not isinstance(hi, int) or isinstance(hi, bool) or hi < 1:
            raise LlmarchError(f"{kind}: max_patches {hi!r} must be a positive integer")
        if c["resample"] != BICUBIC:  # another filter's torchvision path depends on the CPU (native uint8 or not)
            raise LlmarchError(f"{kind}: resample {c['resample']!r} is not supported; supported: {BICUBIC} (bicubic)")
        return cls(tile=(size["height"], size["width"]), crop=bool(c["crop_to_patches"]), max_tiles=hi,
                   resize=bool(c["do_resize"]), patch_size=int(c["patch_size"]),
                   steps=ResizeCropNormalize.without_resize(c))

    def count(self, image) -> int:
        """The tiles one image becomes (get_number_of_image_patches): its grid's, and a thumbnail beside several."""
        if not self.crop:
            return 1
        cols, rows = canvas_grid(image.height, image.width, self.tile[0], self.max_tiles)
        return cols * rows + (cols * rows > 1)

    def tiles(self, image) -> list[torch.Tensor]:
        """One image's tiles, uint8 (3, h, w), row by row, then the thumbnail where there are several."""
        x, (h, w) = rgb_tensor(image, self.steps.rgb), self.tile
        if not self.crop:
            return [resized(x, h, w) if self.resize else x]
        cols, rows = canvas_grid(*x.shape[1:], h, self.max_tiles)
        canvas = resized(x, h * rows, w * cols)
        tiles = [canvas[:, r * h:(r + 1) * h, c * w:(c + 1) * w] for r in range(rows) for c in range(cols)]
        return tiles + ([resized(x, h, w)] if len(tiles) > 1 else [])

    def __call__(self, images) -> dict:
        """PIL images -> the model's image arguments (preprocess.py): pixel_values (tiles, 3, height, width) float32,
        each image's tiles in turn."""
        out = [t for image in images for t in self.tiles(image)]
        if len({t.shape for t in out}) > 1:
            raise LlmarchError(f"the images preprocess to different sizes {sorted({tuple(t.shape) for t in out})}")
        return {"pixel_values": normalized(torch.stack(out), self.steps)}


def normalized(x: torch.Tensor, steps: ResizeCropNormalize) -> torch.Tensor:
    """TorchvisionBackend.rescale_and_normalize of uint8 (..., 3, H, W) images: the rescale folded into the mean
    and std, (x - mean / r) / (std / r) in float32."""
    rescale = steps.rescale
    if steps.mean_std is None:
        return x * rescale if rescale is not None else x.float()
    mean, std = (torch.tensor(m) for m in steps.mean_std)
    if rescale is not None:
        mean, std = mean * (1.0 / rescale), std * (1.0 / rescale)
    return x.to(torch.float32).sub_(mean.view(-1, 1, 1)).div_(std.view(-1, 1, 1))


# the class's defaults (transformers' Cohere2VisionImageProcessor)
_DEFAULTS = dict(do_convert_rgb=True, do_resize=True, size={"height": 512, "width": 512}, resample=BICUBIC,
                 do_rescale=True, rescale_factor=1 / 255, do_normalize=True, image_mean=OPENAI_CLIP_MEAN,
                 image_std=OPENAI_CLIP_STD, crop_to_patches=True, max_patches=12, patch_size=16)
PROCESSORS.register("Cohere2VisionImageProcessor")(Cohere2Images.from_config)
