"""Prompt layouts of the families whose image processors tile images or size them freely (InternVL, Aya Vision,
Cohere2 Vision, LFM2-VL, Idefics2, Mistral 3, Llama 4): each image's placeholder becomes its tiles' or rows' tokens
as the family's transformers processor writes them. Registered in prompt_parts.PROMPTS (prompts.py imports this
module)."""
from __future__ import annotations

import json

from ..errors import LlmarchError
from . import idefics2_images, pixtral_images
from .cohere2_images import Cohere2Images
from .lfm2_images import Lfm2Images
from .llama4_images import PATCH, Llama4Images, image_text as llama4_image_text, prompt_settings
from .prompt_parts import PROMPTS, image_token, named_token, processor, substituted, tiled
from .tile_prompts import aya_image_text, aya_settings, cohere2_image_text, lfm2_image_text, lfm2_tokens


@PROMPTS.register("internvl")
def internvl(v, tok, prompt: str, images: list, arguments: dict) -> list[int]:
    """InternVLProcessor: the k-th <IMG_CONTEXT> (the image token) becomes <img> (the tokenizer's start_image_token),
    the image token tokens_per_image times for each of its image's tiles (tiled_images.py: the grid and a thumbnail),
    and </img> (end_image_token); then the text is tokenized as usual. A prompt without image tokens gets them at its
    start, each on its own line, as InternVL's chat template writes an image."""
    token, split = image_token(v, tok), tiled(tok, "internvl")
    start, end = named_token(tok, "start_image_token"), named_token(tok, "end_image_token")
    return tok.encode(substituted(prompt, token, images,
                                  lambda image: start + token * (split.count(image) * v.tokens_per_image) + end, "\n"))


internvl.images_kwargs = {"crop_to_patches": True}  # InternVLProcessor's, over the image processor's config


@PROMPTS.register("aya_vision")
def aya_vision(v, tok, prompt: str, images: list, arguments: dict) -> list[int]:
    """AyaVisionProcessor: each <image> (processor_config.json's image_token) becomes its image's tiles' tokens
    (tile_prompts.py; the images at the start where the prompt has none), then the text is tokenized as usual."""
    s = aya_settings(tok)
    if s["img_patch_token"] != image_token(v, tok):
        raise LlmarchError(f"aya_vision: the processor's img_patch_token {s['img_patch_token']} is not the model's "
                           f"image token {image_token(v, tok)}")
    split = tiled(tok, "aya_vision")
    return tok.encode(substituted(prompt, s["image_token"], images,
                                  lambda image: aya_image_text(split.count(image), s)))


aya_vision.images_kwargs = {"crop_to_patches": True}  # AyaVisionProcessor's
aya_vision.placeholder = lambda v, tok: aya_settings(tok)["image_token"]


@PROMPTS.register("idefics2")
def idefics2(v, tok, prompt: str, images: list, arguments: dict) -> list[int]:
    """Idefics2Processor: each image token becomes <fake_token_around_image>, tokens_per_image of it and
    <fake_token_around_image> (five times when the processor splits images), the fake tokens tidied
    (idefics2_images.py; the image tokens at the start where the prompt has none), then the text is tokenized as
    usual."""
    token, split = image_token(v, tok), processor(tok, "idefics2").split
    text = idefics2_images.image_text(token, v.tokens_per_image, split)
    return tok.encode(idefics2_images.tidy(substituted(prompt, token, images, lambda image: text)))


@PROMPTS.register("mistral3")
def mistral3(v, tok, prompt: str, images: list, arguments: dict) -> list[int]:
    """PixtralProcessor (Mistral 3's): the k-th [IMG] becomes its image's rows of [IMG] per merged patch, each row
    ended by [IMG_BREAK], the last by [IMG_END] (pixtral_images.py, from its resized image_sizes); then the text is
    tokenized as usual. A prompt without image tokens gets them at its start, as the chat template writes an image
    part before the text."""
    fields = pixtral_images.processor_fields(v, tok)
    return tok.encode(substituted(prompt, image_token(v, tok), arguments["image_sizes"].tolist(),
                                  lambda size: pixtral_images.image_text(*size, fields["merged"], fields)))


mistral3.images_kwargs = lambda v, tok: {"patch_size": pixtral_images.processor_fields(v, tok)["merged"]}


@PROMPTS.register("cohere2_vision")
def cohere2_vision(v, tok, prompt: str, images: list, arguments: dict) -> list[int]:
    """Cohere2VisionProcessor: each image token becomes its image's tiles' tokens between the tokenizer's boi_token
    and eoi_token (tile_prompts.py; the image tokens at the start where the prompt has none), then the text is
    tokenized as usual."""
    token, split = image_token(v, tok), tiled(tok, "cohere2_vision", Cohere2Images)
    marks = [named_token(tok, k) for k in ("boi_token", "eoi_token", "img_line_break_token")]
    return tok.encode(substituted(prompt, token, images, lambda image: cohere2_image_text(
        split.count(image), split.patch_size ** 2, token, *marks)))


@PROMPTS.register("lfm2_vl")
def lfm2_vl(v, tok, prompt: str, images: list, arguments: dict) -> list[int]:
    """Lfm2VlProcessor: each image token becomes its image's tiles' and thumbnail's tokens (tile_prompts.py; the
    image tokens at the start where the prompt has none), then the text is tokenized with no BOS or EOS added."""
    token, split = image_token(v, tok), tiled(tok, "lfm2_vl", Lfm2Images)
    marks = lfm2_tokens(json.loads(getattr(tok, "side_files", {}).get("tokenizer_config.json", b"{}")))
    text = substituted(prompt, token, images, lambda image: lfm2_image_text(image, split, token, *marks))
    return [i for i, _ in tok.encode_offsets(text)]


@PROMPTS.register("llama4")
def llama4(v, tok, prompt: str, images: list, arguments: dict) -> list[int]:
    """Llama4Processor: each <|image|> (processor_config.json's image_token) becomes its image's tiles' <|patch|>
    runs, separators and global tile (llama4_images.py; the images at the start where the prompt has none), then the
    text is tokenized as usual. A tile's run is (tile / patch_size)^2 / round(1 / pixel_shuffle_ratio^2) tokens,
    which must be what the model writes there, at the <|patch|> positions."""
    s, split = prompt_settings(tok), tiled(tok, "llama4", Llama4Images)
    per = (split.tile // int(s["patch_size"])) ** 2 // int(round(1.0 / float(s["pixel_shuffle_ratio"]) ** 2))
    if per != v.tokens_per_image or image_token(v, tok) != PATCH:
        raise LlmarchError(f"llama4: the processor writes {per} {PATCH} a tile; the model fills "
                           f"{v.tokens_per_image} {image_token(v, tok)} a tile")
    return tok.encode(substituted(prompt, s["image_token"], images,
                                  lambda image: llama4_image_text(*split.grid(image), per)))


llama4.placeholder = lambda v, tok: prompt_settings(tok)["image_token"]
