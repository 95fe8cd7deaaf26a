"""Llama4ImageProcessor's images from files (Llama 4 Scout's and Maverick's; transformers 5.25 has it only as a
torchvision processor, image_processing_llama4.py, which this follows operation for operation on torch tensors, so
that the pixels are equal to its), and Llama4Processor's prompt (processing_llama4.py). Each image, in RGB, becomes a
uint8 (3, H, W) tensor; the canvas is the resolution of h x w tiles (h w <= max_patches) that needs the least
upscaling to hold it (the most, with resize_to_max_canvas), or where every one must shrink it, the least downscaling,
the smallest such canvas on a tie; the image is resized without distortion to fit it (upscaled to no side past the
tile's, unless resize_to_max_canvas), padded with zeros on the right and bottom, rescaled and normalized in bfloat16
(as Meta's code does) and cut into its tiles row by row; where there are several, the whole image resized to one tile
(distorted) follows as the global tile. Resizing is cohere2_images.resized's (torchvision's, antialiased)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch.nn import functional as F

from ..errors import LlmarchError
from .cohere2_images import rgb_tensor, resized
from .preprocess import BILINEAR, HALF, PROCESSOR_FILE, PROCESSORS, ResizeCropNormalize, side_config


@lru_cache(maxsize=16)
def resolutions(max_tiles: int, tile: int) -> torch.Tensor:
    """find_supported_resolutions: (height, width) in pixels of every h x w grid of at most max_tiles tiles, grouped
    by aspect ratio h / w in the order each ratio first appears, counting tiles down from max_tiles."""
    groups: dict[float, list] = {}
    for n in range(max_tiles, 0, -1):
        for h in sorted({d for d in range(1, n + 1) if n % d == 0}):
            groups.setdefault(h / (n // h), []).append((h * tile, n // h * tile))
    return torch.tensor([size for sizes in groups.values() for size in sizes])


def best_fit(height: int, width: int, possible: torch.Tensor, to_max: bool) -> torch.Tensor:
    """get_best_fit: the canvas (height, width) whose limiting scale is the least at or above 1 (the largest with
    to_max), or where all are below 1 the largest; the smallest area among equals. In float32, as transformers'."""
    scale_w, scale_h = possible[:, 1] / width, possible[:, 0] / height
    scales = torch.where(scale_h > scale_w, scale_w, scale_h)
    up = scales[scales >= 1]
    chosen = (up.max() if to_max else up.min()) if len(up) else scales[scales < 1].max()
    canvas = possible[scales == chosen]
    return canvas[torch.argmin(canvas[:, 0] * canvas[:, 1])]


def fitted(height: int, width: int, target) -> tuple[int, int]:
    """get_max_res_without_distortion: the largest (height, width) of the image's aspect ratio within target (its
    sides may be 0-d tensors, whose float32 division transformers' result depends on, so they are kept)."""
    th, tw = target
    scale_w, scale_h = tw / width, th / height
    if scale_w < scale_h:
        return int(min(math.floor(height * scale_w), th)), int(tw)
    return int(th), int(min(math.floor(width * scale_h), tw))


@dataclass(frozen=True)
class Llama4Images:
    tile: int  # size: height = width
    max_tiles: int  # max_patches
    to_max: bool  # resize_to_max_canvas
    steps: ResizeCropNormalize  # RGB conversion, rescale and normalization (no resize or crop)

    @classmethod
    def from_config(cls, config: dict) -> Llama4Images:
        c = {**_DEFAULTS, **{k: v for k, v in config.items() if v is not None}}
        size, hi, kind = c["size"], c["max_patches"], config.get("image_processor_type")
        if not (isinstance(size, dict) and set(size) == {"height", "width"} and size["height"] == size["width"]
                and isinstance(size["height"], int) and size["height"] > 0):
            raise LlmarchError(f"{kind}: size {size!r} must be a square: one positive height and width")
        if not isinstance(hi, int) or isinstance(hi, bool) or hi < 1:
            raise LlmarchError(f"{kind}: max_patches {hi!r} must be a positive integer")
        if c["resample"] != BILINEAR or not c["do_resize"]:
            raise LlmarchError(f"{kind}: resample {c['resample']!r} (do_resize {c['do_resize']!r}) is not supported; "
                               f"supported: {BILINEAR} (bilinear), always resized, as Llama 4's")
        steps = ResizeCropNormalize.without_resize(c)
        if steps.rescale is None:
            raise LlmarchError(f"{kind}: do_rescale false is not supported (Llama 4 rescales, then normalizes)")
        return cls(tile=size["height"], max_tiles=hi, to_max=bool(c["resize_to_max_canvas"]), steps=steps)

    def grid(self, image) -> tuple[int, int]:
        """(rows, cols) of the canvas one PIL image is cut into."""
        canvas = best_fit(image.height, image.width, resolutions(self.max_tiles, self.tile), self.to_max)
        return int(canvas[0]) // self.tile, int(canvas[1]) // self.tile

    def tiles(self, image) -> torch.Tensor:
        """One image's tiles (n, 3, tile, tile), normalized: row by row, then the global tile where there are
        several."""
        x = rgb_tensor(image, self.steps.rgb)
        h, w = x.shape[1:]
        target = best_fit(h, w, resolutions(self.max_tiles, self.tile), self.to_max)
        rows, cols = int(target[0]) // self.tile, int(target[1]) // self.tile
        if not self.to_max:  # no side upscaled past the tile's
            target = (min(max(h, self.tile), target[0]), min(max(w, self.tile), target[1]))
        nh, nw = fitted(h, w, target)
        canvas = resized(x, max(nh, 1), max(nw, 1), "bilinear")
        canvas = F.pad(canvas, (0, cols * self.tile - canvas.shape[2], 0, rows * self.tile - canvas.shape[1]))
        t = self.tile
        out = [self.normalized(canvas)[:, r * t:(r + 1) * t, c * t:(c + 1) * t] for r in range(rows)
               for c in range(cols)]
        return torch.stack(out + ([self.normalized(resized(x, t, t, "bilinear"))] if len(out) > 1 else []))

    def normalized(self, x: torch.Tensor) -> torch.Tensor:
        """Llama4ImageProcessor.rescale_and_normalize: uint8 to bfloat16, times the rescale factor, then
        torchvision's normalize (x - mean) / std, all in bfloat16; or, without normalization, x times the factor."""
        if self.steps.mean_std is None:
            return x * self.steps.rescale
        mean, std = (torch.tensor(m, dtype=torch.bfloat16).view(-1, 1, 1) for m in self.steps.mean_std)
        return (x.to(torch.bfloat16) * self.steps.rescale).sub(mean).div_(std)

    def __call__(self, images) -> dict:
        """PIL images -> the model's image arguments (preprocess.py): pixel_values (tiles, 3, tile, tile) float32
        (bfloat16's values), each image's tiles in turn."""
        return {"pixel_values": torch.cat([self.tiles(image) for image in images]).float()}


# the class's defaults (transformers' Llama4ImageProcessor)
_DEFAULTS = dict(do_convert_rgb=True, do_resize=True, size={"height": 336, "width": 336}, resample=BILINEAR,
                 do_rescale=True, rescale_factor=1 / 255, do_normalize=True, image_mean=HALF, image_std=HALF,
                 max_patches=16, resize_to_max_canvas=False)
PROCESSORS.register("Llama4ImageProcessor")(Llama4Images.from_config)

# Llama4Processor's defaults (processor_config.json may set them); its layout writes the tokens' default texts
PROMPT = dict(patch_size=14, pixel_shuffle_ratio=0.5, image_token="<|image|>")
START, END, PATCH, X_SEP, Y_SEP = ("<|image_start|>", "<|image_end|>", "<|patch|>", "<|tile_x_separator|>",
                                   "<|tile_y_separator|>")


def prompt_settings(tok) -> dict:
    """Llama4Processor's settings: the checkpoint's processor_config.json over the class's defaults."""
    config = side_config(getattr(tok, "side_files", {}), PROCESSOR_FILE)
    return {**PROMPT, **{k: config[k] for k in PROMPT if config.get(k) is not None}}


def image_text(rows: int, cols: int, per_tile: int) -> str:
    """Llama4Processor._prompt_split_image: <|image_start|>, for a split image each row of tiles' <|patch|> runs
    separated by <|tile_x_separator|> and ended by <|tile_y_separator|>; then <|image|> and the global tile's (the
    only tile's) run, and <|image_end|>."""
    run = PATCH * per_tile
    grid = "".join(X_SEP.join([run] * cols) + Y_SEP for _ in range(rows)) if rows * cols > 1 else ""
    return f"{START}{grid}<|image|>{run}{END}"
