"""Qwen2-VL's, Qwen2.5-VL's and Qwen3-VL's image preprocessing, as transformers' Qwen2VLImageProcessor (its PIL backend)
does it: each image converted to RGB (transparency composited onto white), resized so that both sides are multiples
of patch_size x merge_size and its area lies within [min_pixels, max_pixels], keeping its aspect ratio as closely as
that allows (smart_resize), with PIL's resampling;
scaled to [0, 1] and normalized per channel; then cut into patch_size x patch_size patches, repeated over
temporal_patch_size frames (an image is a one-frame video), each merge_size x merge_size group of patches in a run
(the merger's input), every patch flattened (channels, frames, rows, columns). The images' patches are concatenated:
pixel_values (P, patch_dim) and image_grid_thw (N, 3), each image's (1, rows, columns) of patches, which is how
TransformerLM.forward and generate take them."""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import LlmarchError
from .image_files import to_rgb

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # the processor's defaults (OpenAI CLIP's statistics)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
BICUBIC = 3  # PIL's Resampling.BICUBIC, the processor's default


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int, frames: int = 1,
                 grow_small: bool = False) -> tuple[int, int]:
    """The (height, width) an image is resized to: each side a multiple of factor, nearest to its own, then scaled
    down (floor) or up (ceil) by one common ratio where the area, over `frames` frames, leaves [min_pixels,
    max_pixels]. GLM-4V's (glm4v_pixels.py) counts two frames and, grow_small, first scales an image with a side under
    factor up to it, truncating."""
    if grow_small and (height < factor or width < factor):
        scale = max(factor / height, factor / width)
        height, width = int(height * scale), int(width * scale)
    if max(height, width) / min(height, width) > 200:
        raise LlmarchError(f"an image's aspect ratio must be at most 200, got {height} x {width}")
    h, w = round(height / factor) * factor, round(width / factor) * factor
    if frames * h * w > max_pixels:
        beta = math.sqrt(frames * height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif frames * h * w < min_pixels:
        beta = math.sqrt(min_pixels / (frames * height * width))
        h, w = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h, w


def settings(config: dict, defaults: dict | None = None) -> dict:
    """preprocessor_config.json's fields (min_pixels and max_pixels, else size's shortest_edge and longest_edge, as
    transformers reads them), over `defaults` (a video processor's, in the same names), with the image processor's
    defaults."""
    config = {**(defaults or {}), **config}
    size = config.get("size") or {}
    return dict(patch=config.get("patch_size", 14), frames=config.get("temporal_patch_size", 2),
                merge=config.get("merge_size", 2),
                min_pixels=config.get("min_pixels") or size.get("shortest_edge", 56 * 56),
                max_pixels=config.get("max_pixels") or size.get("longest_edge", 28 * 28 * 1280),
                rgb=config.get("do_convert_rgb", True), resize=config.get("do_resize", True),
                resample=config.get("resample", BICUBIC),
                rescale=config.get("do_rescale", True), scale=config.get("rescale_factor", 1 / 255),
                normalize=config.get("do_normalize", True), mean=config.get("image_mean", CLIP_MEAN),
                std=config.get("image_std", CLIP_STD))


def patchify(x: np.ndarray, patch: int, merge: int, frames: int) -> np.ndarray:
    """(T, C, H, W), T a multiple of frames -> (T/frames * H/p * W/p, C * frames * p * p): temporal patches one
    after another, each one's merge groups row by row, their patches row by row (the video processors' patchify)."""
    T, C, H, W = x.shape
    gh, gw = H // patch, W // patch
    x = x.reshape(T // frames, frames, C, gh // merge, merge, patch, gw // merge, merge, patch)
    return x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8).reshape(T // frames * gh * gw, C * frames * patch * patch)


def frame_array(image, s: dict, size: tuple[int, int] | None) -> np.ndarray:
    """A PIL image -> (C, H, W) float32: made RGB, resized to size (height, width) unless None, rescaled and
    normalized as settings `s` say."""
    if s["rgb"]:
        image = to_rgb(image)
    elif image.mode != "RGB":
        raise LlmarchError(f"an image of mode {image.mode}, and the image processor does not convert to RGB")
    if size is not None:
        image = image.resize((size[1], size[0]), resample=s["resample"])
    factor = s["patch"] * s["merge"]
    if image.height % factor or image.width % factor:
        raise LlmarchError(f"an image of {image.height} x {image.width} pixels must have sides that are "
                           f"multiples of {factor} (patch_size x merge_size) when do_resize is off")
    x = np.moveaxis(np.asarray(image), -1, 0)  # (C, H, W) uint8
    if s["rescale"]:
        x = (x.astype(np.float64) * s["scale"]).astype(np.float32)
    x = x.astype(np.float32)
    if s["normalize"]:
        mean, std = np.array(s["mean"], dtype=np.float32), np.array(s["std"], dtype=np.float32)
        x = ((x.T - mean) / std).T
    return x


def qwen_vl_pixels(images: list, preprocessor_config: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """PIL images and a Qwen2-VL or Qwen2.5-VL checkpoint's preprocessor_config.json (as a dict) -> pixel_values
    (P, patch_dim) float32 and image_grid_thw (N, 3) int64."""
    s = settings(preprocessor_config)
    factor = s["patch"] * s["merge"]
    patches, grids = [], []
    for image in images:
        size = smart_resize(image.height, image.width, factor, s["min_pixels"], s["max_pixels"]) \
            if s["resize"] else None
        x = frame_array(image, s, size)
        patches.append(patchify(np.broadcast_to(x, (s["frames"], *x.shape)), s["patch"], s["merge"], s["frames"]))
        grids.append([1, x.shape[1] // s["patch"], x.shape[2] // s["patch"]])
    if not patches:
        raise LlmarchError("qwen_vl_pixels needs at least one image")
    return torch.from_numpy(np.concatenate(patches)), torch.tensor(grids, dtype=torch.int64)
