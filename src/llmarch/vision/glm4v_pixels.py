"""GLM-4.1V's, GLM-4.5V's and GLM-4.6V's image preprocessing, as transformers' Glm4vImageProcessor (its PIL backend;
Glm46VImageProcessor is the same class renamed) does it: Qwen2VLImageProcessor's steps (qwen_pixels.py) but for the
size each image is resized to. smart_resize bounds the image's area counted over temporal_patch_size frames (an image
is a two-frame video) by size's shortest_edge and longest_edge (defaults 112 x 112 and 28 x 28 x 15000), and first
scales an image with a side under one merge group (patch_size x merge_size) up to it. So each image is made RGB and
resized here, then qwen_vl_pixels rescales, normalizes and cuts it with resizing off."""
from __future__ import annotations

import torch

from ..errors import LlmarchError
from .image_files import to_rgb
from .qwen_pixels import BICUBIC, qwen_vl_pixels, smart_resize

MIN_PIXELS, MAX_PIXELS = 112 * 112, 28 * 28 * 15000  # Glm4vImageProcessor's size


def glm4v_resized(image, config: dict):
    """A PIL image as Glm4vImageProcessor resizes it (RGB first where do_convert_rgb)."""
    if config.get("do_convert_rgb", True):
        image = to_rgb(image)
    if not config.get("do_resize", True):
        return image
    size = config.get("size") or {}
    if not isinstance(size, dict):
        raise LlmarchError(f"Glm4vImageProcessor size {size!r}: only shortest_edge and longest_edge are read")
    h, w = smart_resize(image.height, image.width, config.get("patch_size", 14) * config.get("merge_size", 2),
                        size.get("shortest_edge", MIN_PIXELS), size.get("longest_edge", MAX_PIXELS),
                        frames=config.get("temporal_patch_size", 2), grow_small=True)
    return image.resize((w, h), resample=config.get("resample", BICUBIC))


def glm4v_pixels(images: list, preprocessor_config: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """PIL images and a GLM-4V checkpoint's preprocessor_config.json (as a dict) -> pixel_values (P, patch_dim)
    float32 and image_grid_thw (N, 3) int64."""
    return qwen_vl_pixels([glm4v_resized(image, preprocessor_config) for image in images],
                          {**preprocessor_config, "do_resize": False})
