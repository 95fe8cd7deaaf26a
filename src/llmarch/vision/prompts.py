"""A text prompt about images as the input_ids the family's transformers processor builds: each image's token
repeated once per feature the model writes there (the vision config's image_tokens: LLaVA's tokens_per_image for
every image, Qwen-VL's and GLM-4V's count from each image's grid; Idefics3's tiles and global image from each
image's size).
PROMPTS is keyed by the checkpoint's HF model type (config hf_model_type), as interop's families are; an entry maps
(vision config, tokenizer, prompt, PIL images, their image arguments) to ids. `image_request` is the one call a
command makes: images and a prompt to the ids and the model's image arguments (the image processor's dict of
generate's keyword arguments: pixel_values, and image_grid_thw where the processor gives one), which the caller
passes on whole; `chat_request` the server's, for a conversation its chat template rendered."""
from __future__ import annotations

import json

from ..errors import LlmarchError
from ..registry import Registry
from .config import vision_config
from . import idefics2_images, pixtral_images
from .idefics3_images import image_text
from .tiled_images import TiledImages
from .pixtral_config import is_pixtral, pixtral_vision_config
from .cohere2_images import Cohere2Images
from .lfm2_images import Lfm2Images
from .tile_prompts import aya_image_text, aya_settings, cohere2_image_text, lfm2_image_text, lfm2_tokens
from .qwen_config import is_qwen, qwen_vision_config

PROMPTS: Registry = Registry("image prompt layout")


def image_request(model, tok, prompt: str, images: list) -> tuple[list[int], dict]:
    """(ids, image arguments) for one prompt about `images` (PIL images, image_files.read_image's), with the
    checkpoint's image processor (preprocess.py, from the tokenizer's side files) and prompt layout."""
    v, arguments = _preprocess(model, tok, images)
    return PROMPTS[model.config.hf_model_type](v, tok, prompt, images, arguments), arguments


def chat_request(model, tok, text: str, images: list) -> tuple[list[int], dict]:
    """image_request for a conversation its chat template rendered to `text`, which holds the family's image
    placeholder once per image (a vision-language template writes one for each {"type": "image"} part: the image
    token, Gemma 3's <start_of_image>): the family's layout on it, tokenized as transformers' processor
    apply_chat_template does, BOS added unless the text starts with it (then the text's own, once)."""
    v, arguments = _preprocess(model, tok, images)
    layout = PROMPTS[model.config.hf_model_type]
    token = getattr(layout, "placeholder", _image_token)(v, tok)
    if text.count(token) != len(images):
        raise LlmarchError(f"the chat template wrote {text.count(token)} {token} token(s) for {len(images)} "
                           "image(s): it does not place images")
    bos = _bos_text(tok, required=False)
    if not (bos and text.startswith(bos)):
        return layout(v, tok, text, images, arguments), arguments
    bos_id = tok.encode_offsets(bos)[0][0]
    ids = layout(v, tok, text[len(bos):], images, arguments)  # the tokenizer's own BOS, where it adds one
    return (ids if ids[:1] == [bos_id] else [bos_id] + ids), arguments


def _preprocess(model, tok, images: list):
    """The vision config and the images preprocessed to the model's image arguments."""
    cfg = model.config
    v = None if cfg.vision is None else _vision(cfg.vision)
    if v is None or getattr(v, "held", False):
        raise LlmarchError(f"{cfg.name} reads no images (it has no vision tower that runs: config vision)")
    if cfg.hf_model_type not in PROMPTS:
        raise LlmarchError(f"images for a {cfg.hf_model_type!r} checkpoint are not supported; supported: "
                           f"{', '.join(PROMPTS.names())}")
    return v, _processor(tok, cfg.hf_model_type, cfg.name, v)(images)


def _vision(data: dict):
    """ModelConfig.vision as its tower's config: Qwen-VL's, Pixtral's or the others'."""
    return qwen_vision_config(data) if is_qwen(data) else pixtral_vision_config(data) if is_pixtral(data) else \
        vision_config(data)


def _processor(tok, kind: str, where: str = "the tokenizer", v=None):
    """The checkpoint's image processor (from the tokenizer's side files), with what the family's transformers
    processor passes it on every call over its config (the layout's images_kwargs: InternVLProcessor's
    crop_to_patches; a callable of (vision config, tokenizer) where the processor's own config sets them, as
    PixtralProcessor's patch_size)."""
    from .preprocess import image_processor_config, processor_for

    config = image_processor_config(getattr(tok, "side_files", {}), where)
    kwargs = getattr(PROMPTS[kind], "images_kwargs", {})
    return processor_for({**config, **(kwargs(v, tok) if callable(kwargs) else kwargs)})


def _image_token(v, tok) -> str:
    text = tok.token_text(v.image_token_id) if v.image_token_id < tok.vocab_size else ""
    if not text:
        raise LlmarchError(f"the tokenizer has no text for the image token (id {v.image_token_id})")
    return text


def _count(prompt: str, token: str, n: int) -> int:
    found = prompt.count(token)
    if found not in (0, n):
        raise LlmarchError(f"the prompt holds {found} {token} token(s) for {n} image(s): one per image, or none")
    return found


def _expand(text: str, token: str, counts: list[int]) -> str:
    """The k-th `token` in text repeated counts[k] times (text holds len(counts) of them)."""
    pieces = text.split(token)
    return pieces[0] + "".join(token * n + piece for n, piece in zip(counts, pieces[1:]))


def _bos_text(tok, required: bool = True) -> str | None:
    """tokenizer_config.json's bos_token (a string, or an AddedToken's content)."""
    bos = json.loads(getattr(tok, "side_files", {}).get("tokenizer_config.json", b"{}")).get("bos_token")
    bos = bos.get("content") if isinstance(bos, dict) else bos
    if not bos and required:
        raise LlmarchError("the tokenizer names no bos_token (tokenizer_config.json), which the prompt needs")
    return bos


@PROMPTS.register("llava_onevision")
@PROMPTS.register("vipllava")
@PROMPTS.register("llava_next")
@PROMPTS.register("llava")
def llava(v, tok, prompt: str, images: list, arguments: dict) -> list[int]:
    """LlavaProcessor (VipLLaVA's too; LlavaNextProcessor's and LlavaOnevisionProcessor's, whose counts follow each
    image's size, or with several images to a OneVision prompt are one tile's and a newline): each image
    token in the text becomes its image's count of them, then the text is tokenized as usual (BOS first). A prompt
    without image tokens gets them at its start, each on its own line (LLaVA-1.5's "<image>\\n" layout)."""
    token, counts = _image_token(v, tok), v.image_tokens(arguments)
    if not _count(prompt, token, len(counts)):
        prompt = f"{token}\n" * len(counts) + prompt
    return tok.encode(_expand(prompt, token, counts))


@PROMPTS.register("paligemma")
def paligemma(v, tok, prompt: str, images: list, arguments: dict) -> list[int]:
    """PaliGemmaProcessor: the image tokens (at the start where the prompt has none), BOS after the last of them,
    the prompt, a newline; each image token then its image's count of them; tokenized with no BOS or EOS added."""
    token, counts = _image_token(v, tok), v.image_tokens(arguments)
    if not _count(prompt, token, len(counts)):
        prompt = token * len(counts) + prompt
    end = prompt.rfind(token) + len(token)
    return [i for i, _ in tok.encode_offsets(_expand(prompt[:end] + _bos_text(tok) + prompt[end:] + "\n", token,
                                                     counts))]


# Qwen2VLProcessor's (Qwen2_5_VLProcessor's, Qwen3VLProcessor's) default vision markers, which their chat templates
# write around each image's <|image_pad|>
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"


def qwen_vl(start: str, end: str):
    """Qwen2VLProcessor (and Qwen2.5-VL's, Qwen3-VL's; GLM-4V's Glm4vProcessor, its subclass): the k-th image token
    becomes counts[k] of them (its image's t (h / m) (w / m) merged features), the text tokenized as usual. A prompt
    without one gets each image at its start as the chat templates write it, between the markers `start` and `end`
    (the processor itself refuses a prompt without image tokens)."""
    def layout(v, tok, prompt: str, images: list, arguments: dict) -> list[int]:
        token, counts = _image_token(v, tok), v.image_tokens(arguments)
        if not _count(prompt, token, len(counts)):
            prompt = (start + token + end) * len(counts) + prompt
        return tok.encode(_expand(prompt, token, counts))
    return layout


for _type in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe"):
    PROMPTS.register(_type)(qwen_vl(VISION_START, VISION_END))
# GLM-4V's chat template writes these around each <|image|>
for _type in ("glm4v", "glm4v_moe", "glm46v"):
    PROMPTS.register(_type)(qwen_vl("<|begin_of_image|>", "<|end_of_image|>"))


@PROMPTS.register("idefics3")
@PROMPTS.register("smolvlm")
def idefics3(v, tok, prompt: str, images: list, arguments: dict) -> list[int]:
    """Idefics3Processor, SmolVLMProcessor: each image token becomes the image's tiles' and global image's tokens
    (idefics3_images.py; the image tokens at the start where the prompt has none), then the text is tokenized as
    usual."""
    token = _image_token(v, tok)
    if not _count(prompt, token, len(images)):
        prompt = token * len(images) + prompt
    split = _processor(tok, "idefics3")
    first, *rest = prompt.split(token)
    return tok.encode(first + "".join(image_text(*split.grid(image), token, v.tokens_per_image) + text
                                      for image, text in zip(images, rest)))


def _named_token(tok, key: str) -> str:
    """tokenizer_config.json's `key` token (Gemma 3's boi_token, eoi_token), at its top level or among
    extra_special_tokens."""
    config = json.loads(getattr(tok, "side_files", {}).get("tokenizer_config.json", b"{}"))
    extra = config.get("extra_special_tokens")
    text = config.get(key) or (extra.get(key) if isinstance(extra, dict) else None)
    text = text.get("content") if isinstance(text, dict) else text
    if not text:
        raise LlmarchError(f"the tokenizer names no {key} (tokenizer_config.json), which the image prompt needs")
    return text


@PROMPTS.register("gemma3")
def gemma3(v, tok, prompt: str, images: list, arguments: dict) -> list[int]:
    """Gemma3Processor: each <start_of_image> (the tokenizer's boi_token) in the text becomes "\\n\\n", itself, the
    image token tokens_per_image times, <end_of_image> (eoi_token) and "\\n\\n"; then the text is tokenized as usual
    (BOS first). A prompt without them gets them at its start, one per image."""
    boi, eoi, n = _named_token(tok, "boi_token"), _named_token(tok, "eoi_token"), len(images)
    if not _count(prompt, boi, n):
        prompt = boi * n + prompt
    return tok.encode(prompt.replace(boi, f"\n\n{boi}{_image_token(v, tok) * v.tokens_per_image}{eoi}\n\n"))


gemma3.placeholder = lambda v, tok: _named_token(tok, "boi_token")  # what its chat template writes per image


@PROMPTS.register("internvl")
def internvl(v, tok, prompt: str, images: list, arguments: dict) -> list[int]:
    """InternVLProcessor: the k-th <IMG_CONTEXT> (the image token) becomes <img> (the tokenizer's start_image_token),
    the image token tokens_per_image times for each of its image's tiles (tiled_images.py: the grid and a thumbnail),
    and </img> (end_image_token); then the text is tokenized as usual. A prompt without image tokens gets them at its
    start, each on its own line, as InternVL's chat template writes an image."""
    token, n = _image_token(v, tok), len(images)
    start, end = _named_token(tok, "start_image_token"), _named_token(tok, "end_image_token")
    if not _count(prompt, token, n):
        prompt = f"{token}\n" * n + prompt
    split = _tiled(tok, "internvl")
    first, *rest = prompt.split(token)
    return tok.encode(first + "".join(start + token * (split.count(image) * v.tokens_per_image) + end + text
                                      for image, text in zip(images, rest)))


internvl.images_kwargs = {"crop_to_patches": True}  # InternVLProcessor's, over the image processor's config


def _tiled(tok, kind: str, tiles: type = TiledImages):
    """The checkpoint's image processor, which must be `tiles` (GotOcr2ImageProcessor's by default): the layout
    counts its tiles."""
    split = _processor(tok, kind)
    if not isinstance(split, tiles):
        raise LlmarchError(f"{kind}'s image prompt follows the tiles of {tiles.__name__}; the checkpoint names "
                           f"another image processor ({type(split).__name__})")
    return split


@PROMPTS.register("aya_vision")
def aya_vision(v, tok, prompt: str, images: list, arguments: dict) -> list[int]:
    """AyaVisionProcessor: each <image> (processor_config.json's image_token) becomes its image's tiles' tokens
    (tile_prompts.py; the images at the start where the prompt has none), then the text is tokenized as usual."""
    s = aya_settings(tok)
    if s["img_patch_token"] != _image_token(v, tok):
        raise LlmarchError(f"aya_vision: the processor's img_patch_token {s['img_patch_token']} is not the model's "
                           f"image token {_image_token(v, tok)}")
    split, token = _tiled(tok, "aya_vision"), s["image_token"]
    if not _count(prompt, token, len(images)):
        prompt = token * len(images) + prompt
    first, *rest = prompt.split(token)
    return tok.encode(first + "".join(aya_image_text(split.count(image), s) + text
                                      for image, text in zip(images, rest)))


aya_vision.images_kwargs = {"crop_to_patches": True}  # AyaVisionProcessor's
aya_vision.placeholder = lambda v, tok: aya_settings(tok)["image_token"]


@PROMPTS.register("idefics2")
def idefics2(v, tok, prompt: str, images: list, arguments: dict) -> list[int]:
    """Idefics2Processor: each image token becomes <fake_token_around_image>, tokens_per_image of it and
    <fake_token_around_image> (five times when the processor splits images), the fake tokens tidied
    (idefics2_images.py; the image tokens at the start where the prompt has none), then the text is tokenized as
    usual."""
    token = _image_token(v, tok)
    if not _count(prompt, token, len(images)):
        prompt = token * len(images) + prompt
    split = _processor(tok, "idefics2").split
    return tok.encode(idefics2_images.tidy(prompt.replace(token, idefics2_images.image_text(
        token, v.tokens_per_image, split))))


@PROMPTS.register("mistral3")
def mistral3(v, tok, prompt: str, images: list, arguments: dict) -> list[int]:
    """PixtralProcessor (Mistral 3's): the k-th [IMG] becomes its image's rows of [IMG] per merged patch, each row
    ended by [IMG_BREAK], the last by [IMG_END] (pixtral_images.py, from its resized image_sizes); then the text is
    tokenized as usual. A prompt without image tokens gets them at its start, as the chat template writes an image
    part before the text."""
    token, fields = _image_token(v, tok), pixtral_images.processor_fields(v, tok)
    if not _count(prompt, token, len(images)):
        prompt = token * len(images) + prompt
    first, *rest = prompt.split(token)
    sizes = arguments["image_sizes"].tolist()
    return tok.encode(first + "".join(pixtral_images.image_text(h, w, fields["merged"], fields) + text
                                      for (h, w), text in zip(sizes, rest)))


mistral3.images_kwargs = lambda v, tok: {"patch_size": pixtral_images.processor_fields(v, tok)["merged"]}


@PROMPTS.register("cohere2_vision")
def cohere2_vision(v, tok, prompt: str, images: list, arguments: dict) -> list[int]:
    """Cohere2VisionProcessor: each image token becomes its image's tiles' tokens between the tokenizer's boi_token
    and eoi_token (tile_prompts.py; the image tokens at the start where the prompt has none), then the text is
    tokenized as usual."""
    token, split = _image_token(v, tok), _tiled(tok, "cohere2_vision", Cohere2Images)
    marks = [_named_token(tok, k) for k in ("boi_token", "eoi_token", "img_line_break_token")]
    if not _count(prompt, token, len(images)):
        prompt = token * len(images) + prompt
    first, *rest = prompt.split(token)
    return tok.encode(first + "".join(cohere2_image_text(split.count(image), split.patch_size ** 2, token, *marks) +
                                      text for image, text in zip(images, rest)))


@PROMPTS.register("lfm2_vl")
def lfm2_vl(v, tok, prompt: str, images: list, arguments: dict) -> list[int]:
    """Lfm2VlProcessor: each image token becomes its image's tiles' and thumbnail's tokens (tile_prompts.py; the
    image tokens at the start where the prompt has none), then the text is tokenized with no BOS or EOS added."""
    token, split = _image_token(v, tok), _tiled(tok, "lfm2_vl", Lfm2Images)
    marks = lfm2_tokens(json.loads(getattr(tok, "side_files", {}).get("tokenizer_config.json", b"{}")))
    if not _count(prompt, token, len(images)):
        prompt = token * len(images) + prompt
    first, *rest = prompt.split(token)
    text = first + "".join(lfm2_image_text(image, split, token, *marks) + t for image, t in zip(images, rest))
    return [i for i, _ in tok.encode_offsets(text)]
