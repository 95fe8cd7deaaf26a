"""The prompt text of processors that tile each image (tiled_images.py: a grid of tiles and a thumbnail) and
replace each image placeholder of the prompt by their tokens around those tiles. AyaVisionProcessor (transformers'
processing_aya_vision.py; Dash et al. 2025, "Aya Vision"): `<image>` becomes <|START_OF_IMG|>, then for the k-th of
the grid's tiles the text TILE_k and the image token per tile, then TILE_GLOBAL and the thumbnail's, and
<|END_OF_IMG|>; its settings are processor_config.json's, with the class's defaults. Cohere2VisionProcessor
(processing_cohere2_vision.py): the image token becomes the tokenizer's boi_token, for each tile (the thumbnail
last) the image token patch_size^2 times and img_line_break_token, then eoi_token. Lfm2VlProcessor
(processing_lfm2_vl.py): <|image_start|>, for a split image each tile's <|img_row_r_col_c|> and its tokens, then
<|img_thumbnail|> and the thumbnail's, or for one piece its tokens alone, and <|image_end|>."""
from __future__ import annotations

import math

from ..errors import LlmarchError
from .preprocess import PROCESSOR_FILE, side_config

# AyaVisionProcessor's defaults; a saved processor_config.json writes patch_size already multiplied by the
# downsample factor (and no downsample_factor), as the class keeps it
AYA = dict(image_token="<image>", patch_size=28, img_size=364, downsample_factor=1,
           start_of_img_token="<|START_OF_IMG|>", end_of_img_token="<|END_OF_IMG|>", img_patch_token="<|IMG_PATCH|>",
           tile_token="TILE", tile_global_token="TILE_GLOBAL")


def aya_settings(tok) -> dict:
    """AyaVisionProcessor's settings: the checkpoint's processor_config.json over the class's defaults."""
    config = side_config(getattr(tok, "side_files", {}), PROCESSOR_FILE)
    s = {**AYA, **{k: config[k] for k in AYA if config.get(k) is not None}}
    side = int(s["patch_size"]) * int(s["downsample_factor"])
    if side <= 0 or int(s["img_size"]) < side:
        raise LlmarchError(f"aya_vision: processor img_size {s['img_size']} and patch_size {s['patch_size']} x "
                           f"downsample_factor {s['downsample_factor']} give no image tokens")
    return dict(s, per_tile=(int(s["img_size"]) // side) ** 2)


def aya_image_text(tiles: int, s: dict) -> str:
    """AyaVisionProcessor.replace_image_token for an image of `tiles` tiles (the thumbnail last, alone when one)."""
    patches = s["img_patch_token"] * s["per_tile"]
    grid = "".join(f"{s['tile_token']}_{k}{patches}" for k in range(1, tiles))
    return f"{s['start_of_img_token']}{grid}{s['tile_global_token']}{patches}{s['end_of_img_token']}"


def cohere2_image_text(tiles: int, per_tile: int, token: str, boi: str, eoi: str, line_break: str) -> str:
    """Cohere2VisionProcessor.replace_image_token for an image of `tiles` tiles of `per_tile` tokens."""
    return boi + (token * per_tile + line_break) * tiles + eoi


def lfm2_image_text(image, split, token: str, start: str, end: str, thumbnail: str) -> str:
    """Lfm2VlProcessor._build_image_tokens (with use_image_special_tokens) for one PIL image and the checkpoint's
    Lfm2VlImageProcessor (lfm2_images.py): ceil(n / downsample_factor) tokens a side of n patches."""
    c = split.c
    rows, cols, (h, w) = split.layout(image.height, image.width)

    def side(pixels: int) -> int:
        return math.ceil(pixels // c["encoder_patch_size"] / c["downsample_factor"])

    whole = token * (side(h) * side(w))
    if rows * cols == 1:
        return start + whole + end
    tile = token * side(c["tile_size"]) ** 2
    grid = "".join(f"<|img_row_{r + 1}_col_{k + 1}|>{tile}" for r in range(rows) for k in range(cols))
    return start + grid + (thumbnail + whole if c["use_thumbnail"] else "") + end


# Lfm2VlProcessor's tokens where the tokenizer names none
LFM2_TOKENS = {"image_start_token": "<|image_start|>", "image_end_token": "<|image_end|>",
               "image_thumbnail_token": "<|img_thumbnail|>"}


def lfm2_tokens(tokenizer_config: dict) -> list[str]:
    """The image start, end and thumbnail tokens Lfm2VlProcessor reads from the tokenizer, or its defaults."""
    return [tokenizer_config.get(k) or default for k, default in LFM2_TOKENS.items()]
