"""The prompt text of processors that tile each image (tiled_images.py: a grid of tiles and a thumbnail) and
replace each image placeholder of the prompt by their tokens around those tiles. AyaVisionProcessor (transformers'
processing_aya_vision.py; Dash et al. 2025, "Aya Vision"): `<image>` becomes <|START_OF_IMG|>, then for the k-th of
the grid's tiles the text TILE_k and the image token per tile, then TILE_GLOBAL and the thumbnail's, and
<|END_OF_IMG|>; its settings are processor_config.json's, with the class's defaults. Cohere2VisionProcessor
(processing_cohere2_vision.py): the image token becomes the tokenizer's boi_token, for each tile (the thumbnail
last) the image token patch_size^2 times and img_line_break_token, then eoi_token."""
from __future__ import annotations

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
