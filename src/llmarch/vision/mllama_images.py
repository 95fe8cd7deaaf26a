"""Llama 3.2 Vision's image preprocessing (transformers' MllamaImageProcessor, its PIL class
image_processing_pil_mllama.py) and prompt (MllamaProcessor). Each image, in RGB, is resized to fit the best canvas of
tiles: among the tile arrangements of at most max_image_tiles tiles (h x w tiles of size x size pixels), the one
needing the least upscaling, or if none upscales the least downscaling, the smaller area on a tie; the image keeps
its aspect ratio within it (no side under one tile, nor over the canvas), is padded with zeros at its bottom and
right to the canvas, rescaled and normalized, and cut into its tiles, row by row. A prompt's images are packed as
(1, images, max_image_tiles, 3, size, size), tiles past an image's own zero, with aspect_ratio_ids (1, images), the
arrangement's index among the supported ones + 1, and aspect_ratio_mask (1, images, max_image_tiles), 1 for an
image's own tiles. The prompt keeps one <|image|> per image (the cross-attention layers read the images, not the
tokens); MllamaProcessor puts BOS after its leading image tokens unless the prompt holds BOS, and the tokenizer adds
its own in front."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import torch
from PIL import Image

from ..errors import LlmarchError
from .image_files import to_rgb
from .preprocess import BILINEAR, HALF, PROCESSORS, ResizeCropNormalize
from .prompt_parts import PROMPTS, bos_text, count, image_token

# MllamaImageProcessorPil's defaults
_DEFAULTS = dict(do_convert_rgb=True, do_resize=True, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                 do_pad=True, size={"height": 224, "width": 224}, resample=BILINEAR, image_mean=HALF, image_std=HALF,
                 max_image_tiles=4)


@lru_cache(maxsize=10)
def arrangements(max_tiles: int) -> list[tuple[int, int]]:
    """get_all_supported_aspect_ratios: every (a, b) with a b <= max_tiles, a outer; read as (rows, columns)."""
    return [(a, b) for a in range(1, max_tiles + 1) for b in range(1, max_tiles + 1) if a * b <= max_tiles]


def canvas(height: int, width: int, max_tiles: int, tile: int) -> tuple[int, int]:
    """get_optimal_tiled_canvas: the (height, width) of the best canvas of tiles for an image."""
    sizes = np.array(arrangements(max_tiles)) * tile
    scale_h, scale_w = sizes[:, 0] / height, sizes[:, 1] / width
    scales = np.where(scale_w > scale_h, scale_h, scale_w)
    up = scales[scales >= 1]
    chosen = sizes[scales == (np.min(up) if len(up) else np.max(scales[scales < 1]))]
    return tuple(int(s) for s in chosen[np.argmin(chosen[:, 0] * chosen[:, 1])])


def fit(height: int, width: int, canvas_h: int, canvas_w: int, tile: int) -> tuple[int, int]:
    """get_image_size_fit_to_canvas: the image's size within the canvas, aspect kept, no side under a tile."""
    target_w, target_h = np.clip(width, tile, canvas_w), np.clip(height, tile, canvas_h)
    scale_h, scale_w = target_h / height, target_w / width
    if scale_w < scale_h:
        return min(math.floor(height * scale_w) or 1, target_h), int(target_w)
    return int(target_h), min(math.floor(width * scale_h) or 1, target_w)


@dataclass(frozen=True)
class MllamaImages:
    steps: ResizeCropNormalize  # its RGB conversion, rescale and normalization (no resize or crop)
    tile: int
    max_tiles: int

    @classmethod
    def from_config(cls, config: dict) -> MllamaImages:
        c = {**_DEFAULTS, **{k: v for k, v in config.items() if v is not None}}
        size = c["size"]
        if not (c["do_resize"] and c["do_pad"]) or not isinstance(size, dict) or size.get("height") != size.get(
                "width") or not isinstance(size.get("height"), int):
            raise LlmarchError(f"MllamaImageProcessor: do_resize and do_pad, and a square size, are needed; got "
                               f"do_resize={c['do_resize']}, do_pad={c['do_pad']}, size={size!r}")
        if not isinstance(c["max_image_tiles"], int) or c["max_image_tiles"] <= 0:
            raise LlmarchError(f"MllamaImageProcessor max_image_tiles {c['max_image_tiles']!r} must be a positive "
                               "integer")
        return cls(ResizeCropNormalize.without_resize(c), size["height"], c["max_image_tiles"])

    def tiles(self, image) -> tuple[np.ndarray, tuple[int, int]]:
        """One PIL image -> its tiles (n, 3, size, size) and their arrangement (rows, columns)."""
        if self.steps.rgb:
            image = to_rgb(image)
        canvas_h, canvas_w = canvas(image.height, image.width, self.max_tiles, self.tile)
        h, w = fit(image.height, image.width, canvas_h, canvas_w, self.tile)
        padded = Image.new(image.mode, (canvas_w, canvas_h))  # zeros right and below, as MllamaImageProcessor pads
        padded.paste(image.resize((w, h), resample=self.steps.resample), (0, 0))
        x = replace(self.steps, rgb=False).one(padded)  # (3, H, W) float32
        rows, cols = canvas_h // self.tile, canvas_w // self.tile
        x = x.reshape(3, rows, self.tile, cols, self.tile).transpose(1, 3, 0, 2, 4)
        return x.reshape(rows * cols, 3, self.tile, self.tile), (rows, cols)

    def __call__(self, images) -> dict[str, torch.Tensor]:
        """PIL images (one prompt's) -> pixel_values (1, N, max_tiles, 3, size, size), aspect_ratio_ids (1, N),
        aspect_ratio_mask (1, N, max_tiles)."""
        n = len(images)
        pixels = np.zeros((1, n, self.max_tiles, 3, self.tile, self.tile), dtype=np.float32)
        ids, mask = torch.zeros(1, n, dtype=torch.long), torch.zeros(1, n, self.max_tiles, dtype=torch.long)
        for k, image in enumerate(images):
            tiles, arrangement = self.tiles(image)
            pixels[0, k, :len(tiles)] = tiles
            ids[0, k], mask[0, k, :len(tiles)] = arrangements(self.max_tiles).index(arrangement) + 1, 1
        return {"pixel_values": torch.from_numpy(pixels), "aspect_ratio_ids": ids, "aspect_ratio_mask": mask}



PROCESSORS.register("MllamaImageProcessor")(MllamaImages.from_config)


@PROMPTS.register("mllama")
def mllama(v, tok, prompt: str, images: list, arguments: dict, bos_written: bool = False) -> list[int]:
    """MllamaProcessor: the prompt's image tokens kept, one per image (a prompt without them gets them at its start,
    as the chat template writes an image part); BOS after the leading ones unless the prompt holds it
    (build_string_from_input), or the chat template wrote it (bos_written: the text after it); tokenized as usual
    (the tokenizer's BOS in front)."""
    token, bos = image_token(v, tok), bos_text(tok)
    if not count(prompt, token, len(images)):
        prompt = token * len(images) + prompt
    if bos not in prompt and not bos_written:
        lead = 0
        while prompt.startswith(token):
            prompt, lead = prompt[len(token):], lead + 1
        prompt = token * lead + bos + prompt
    return tok.encode(prompt)


# chat_request's form for a rendered chat whose template wrote BOS: the processor adds none then
# (ProcessorMixin.apply_chat_template tokenizes it without special tokens)
mllama.after_bos = lambda v, tok, text, images, arguments: mllama(v, tok, text, images, arguments, bos_written=True)
