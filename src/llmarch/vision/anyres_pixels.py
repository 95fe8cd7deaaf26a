"""AnyRes images from files (anyres.py): transformers' LlavaNextImageProcessor (its PIL class) and LlavaNextProcessor's
prompt. Each image, converted to RGB, is resized to fit the best of image_grid_pinpoints (the side that limits the
scale exact, the other rounded up), centred on a black canvas of that size, cut into tiles of the crop size row by
row, and the whole image resized to one tile goes first; every tile then through CLIP's resize, crop, rescale and
normalize (preprocess.py). pixel_values (N, most tiles, 3, S, S), zeros after an image's own tiles; image_sizes
(N, 2) the images' (height, width). The prompt's <image> becomes as many image tokens as its image has features.
LlavaOnevisionImageProcessor (OneVisionPreprocess) is the same with SigLIP's square resize and no crop by default."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from ..errors import LlmarchError
from .anyres_grid import best_resolution
from .image_files import to_rgb
from .preprocess import (_BASE, BICUBIC, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, ResizeCropNormalize, _channels,
                         _size)
from .square_images import pad_square

_DEFAULTS = dict(_BASE, size={"shortest_edge": 224}, default_to_square=False, resample=BICUBIC, do_center_crop=True,
                 crop_size={"height": 224, "width": 224}, image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD,
                 image_grid_pinpoints=[[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]])
# LlavaOnevisionImageProcessor's: 384 squares, no crop, and every grid of 1 to 6 tiles a side
_ONEVISION = dict(_BASE, size={"height": 384, "width": 384}, default_to_square=False, resample=BICUBIC,
                  do_center_crop=False, crop_size=None, image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD,
                  image_grid_pinpoints=[[384 * r, 384 * c] for r in range(1, 7) for c in range(1, 7)])


@dataclass(frozen=True)
class AnyResPreprocess:
    each: ResizeCropNormalize  # what every tile goes through
    pinpoints: list
    tile: int  # the tiles' side: the crop's height (else the size's)
    whole: tuple[int, int]  # (height, width) the whole image is resized to
    fill: tuple[int, ...]  # OneVision's square padding colour: int(image_mean * 255) per channel
    defaults: ClassVar[dict] = _DEFAULTS  # the transformers class's, for what a config leaves out

    @classmethod
    def from_config(cls, config: dict) -> AnyResPreprocess:
        c = {**cls.defaults, **{k: v for k, v in config.items() if v is not None}}
        size = _size(c["size"], c["default_to_square"])
        whole = (size["height"], size["width"]) if "height" in size else (size["shortest_edge"],) * 2
        crop = c.get("crop_size")
        tile = int(crop if isinstance(crop, int) else crop["height"]) if crop else whole[0]
        points = [list(p) for p in c["image_grid_pinpoints"]]
        if any(x % tile for p in points for x in p):
            raise LlmarchError(f"{config.get('image_processor_type')}: image_grid_pinpoints {points} must be whole "
                               f"tiles of {tile}")
        return cls(ResizeCropNormalize.from_config(cls.defaults, config), points, tile, whole,
                   tuple(int(m * 255) for m in _channels(c["image_mean"])))

    def __call__(self, images) -> dict:
        return self.tiled(images)

    def tiled(self, images) -> dict:
        """PIL images, every one tiled -> the model's image arguments (preprocess.py): pixel_values (N, most tiles,
        3, H, W) float32 and image_sizes (N, 2)."""
        out = [np.stack([self.each.one(t) for t in self.tiles(image)]) for image in images]
        most = max(len(a) for a in out)
        return {"pixel_values": torch.from_numpy(np.stack([np.pad(a, ((0, most - len(a)),) + ((0, 0),) * 3)
                                                           for a in out])),
                "image_sizes": image_sizes(images)}

    def tiles(self, image) -> list:
        """The whole image at the tile size, then the tiles of it resized and padded to its best resolution."""
        image = to_rgb(image) if self.each.rgb else image
        return [image.resize(self.whole[::-1], resample=self.each.resample)] + cut_tiles(
            image, self.pinpoints, self.tile, self.each.resample)


def cut_tiles(image, pinpoints: list, tile: int, resample: int) -> list:
    """get_image_patches: a PIL image resized to fit the best of `pinpoints` (select_best_resolution,
    get_patch_output_size), centred on a black canvas of that resolution (transformers pads with zeros, the offsets
    rounded down), cut into tile x tile crops row by row (divide_to_patches: the last row's and column's cut short
    where the resolution is no multiple of the tile; LLaVA-NeXT's always are, Aria's split_resolutions may not be)."""
    from PIL import Image

    h, w = best_resolution(image.height, image.width, pinpoints)
    nh, nw = fitted(image.height, image.width, h, w)
    canvas = Image.new(image.mode, (w, h))
    canvas.paste(image.resize((nw, nh), resample=resample), ((w - nw) // 2, (h - nh) // 2))
    return [canvas.crop((x, y, min(x + tile, w), min(y + tile, h))) for y in range(0, h, tile)
            for x in range(0, w, tile)]


class OneVisionPreprocess(AnyResPreprocess):
    """LlavaOnevisionImageProcessor, called with one prompt's images (prompts.image_request). One image is tiled
    (AnyRes); several (transformers' multi-image mode: images nested per prompt, batch_num_images > 1) are each
    padded to a square with the mean colour, centred, and taken whole as one tile: pixel_values (N, 1, 3, S, S),
    image_sizes their own (height, width). `tiled` tiles every image, as transformers does a flat list of images
    (one a prompt)."""
    defaults: ClassVar[dict] = _ONEVISION

    def __call__(self, images) -> dict:
        return self.tiled(images) if len(images) < 2 else self.single_tiles(images)

    def single_tiles(self, images) -> dict:
        """Several images of one prompt, each one square-padded tile: pixel_values (N, 1, 3, S, S), image_sizes."""
        return {"pixel_values": torch.from_numpy(np.stack([self.each.one(self.square(image))[None]
                                                           for image in images])),
                "image_sizes": image_sizes(images)}

    def square(self, image):
        """pad_to_square: the image centred on a square of its longest side, filled with the mean colour as
        int(mean * 255) per channel (the class's image_mean: the config's)."""
        return pad_square(to_rgb(image) if self.each.rgb else image, self.fill)


def fitted(height: int, width: int, target_h: int, target_w: int) -> tuple[int, int]:
    """get_patch_output_size: (height, width) scaled to fit (target_h, target_w), the limiting side exact."""
    scale_w, scale_h = target_w / width, target_h / height
    if scale_w < scale_h:
        return min(math.ceil(height * scale_w), target_h), target_w
    return target_h, min(math.ceil(width * scale_h), target_w)


def image_sizes(images) -> torch.Tensor:
    """(N, 2): each PIL image's (height, width), what the model unpads to."""
    return torch.tensor([[image.height, image.width] for image in images])


def anyres_request(model, tok, prompt: str, images: list) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """prompts.image_request for an AnyRes checkpoint, its arguments unpacked: (ids, pixel_values, image_sizes) for
    one prompt about `images` (PIL), with the checkpoint's image processor (from the tokenizer's side files) and
    LlavaNextProcessor's prompt (LLaVA's layout, each <image> as its image's count: VisionConfig.image_tokens), what
    llmarch.generate(model, [ids], n, pixel_values=, image_sizes=) takes."""
    from .prompts import image_request

    ids, arguments = image_request(model, tok, prompt, images)
    return ids, arguments["pixel_values"], arguments["image_sizes"]
