"""A text prompt about images as the input_ids the family's transformers processor builds: each image's token
repeated once per feature the model writes there (VisionConfig.tokens_per_image). PROMPTS is keyed by the
checkpoint's HF model type (config hf_model_type), as interop's families are; an entry maps (model config, tokenizer,
prompt, images) to ids. `image_request` is the one call a command makes: images and a prompt to the ids and the
pixel_values for generate; `chat_request` the server's, for a conversation its chat template rendered."""
from __future__ import annotations

import json

from ..errors import LlmarchError
from ..registry import Registry
from .config import vision_config

PROMPTS: Registry = Registry("image prompt layout")


def image_request(model, tok, prompt: str, images: list) -> tuple[list[int], object]:
    """(ids, pixel_values (N, 3, H, W)) for one prompt about `images` (PIL images, image_files.read_image's), with
    the checkpoint's image processor (preprocess.py, from the tokenizer's side files) and prompt layout."""
    v, pixels = _pixels(model, tok, images)
    return PROMPTS[model.config.hf_model_type](v, tok, prompt, len(images)), pixels


def chat_request(model, tok, text: str, images: list) -> tuple[list[int], object]:
    """image_request for a conversation its chat template rendered to `text`, with one image token per image (a
    vision-language template writes one for each {"type": "image"} part): each token expanded, then tokenized as
    transformers' processor apply_chat_template does, BOS added unless the text starts with it."""
    v, pixels = _pixels(model, tok, images)
    token = _image_token(v, tok)
    if text.count(token) != len(images):
        raise LlmarchError(f"the chat template wrote {text.count(token)} {token} token(s) for {len(images)} "
                           "image(s): it does not place images")
    text, bos = text.replace(token, token * v.tokens_per_image), _bos_text(tok, required=False)
    ids = [i for i, _ in tok.encode_offsets(text)] if bos and text.startswith(bos) else tok.encode(text)
    return ids, pixels


def _pixels(model, tok, images: list):
    """The vision config and the images' pixel_values, checked against the tower."""
    from .preprocess import image_processor_config, processor_for

    cfg = model.config
    if cfg.vision is None or vision_config(cfg.vision).held:
        raise LlmarchError(f"{cfg.name} reads no images (it has no vision tower that runs: config vision)")
    if cfg.hf_model_type not in PROMPTS:
        raise LlmarchError(f"images for a {cfg.hf_model_type!r} checkpoint are not supported; supported: "
                           f"{', '.join(PROMPTS.names())}")
    v = vision_config(cfg.vision)
    pixels = processor_for(image_processor_config(getattr(tok, "side_files", {}), cfg.name))(images)
    if tuple(pixels.shape[-2:]) != (v.image_size, v.image_size):
        raise LlmarchError(f"the image processor makes {tuple(pixels.shape[-2:])} images; the tower reads "
                           f"{v.image_size}x{v.image_size}")
    return v, pixels


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


def _bos_text(tok, required: bool = True) -> str | None:
    """tokenizer_config.json's bos_token (a string, or an AddedToken's content)."""
    bos = json.loads(getattr(tok, "side_files", {}).get("tokenizer_config.json", b"{}")).get("bos_token")
    bos = bos.get("content") if isinstance(bos, dict) else bos
    if not bos and required:
        raise LlmarchError("the tokenizer names no bos_token (tokenizer_config.json), which the prompt needs")
    return bos


@PROMPTS.register("llava")
def llava(v, tok, prompt: str, n: int) -> list[int]:
    """LlavaProcessor: each image token in the text becomes tokens_per_image of them, then the text is tokenized
    as usual (BOS first). A prompt without image tokens gets them at its start, each on its own line (LLaVA-1.5's
    "<image>\\n" layout)."""
    token = _image_token(v, tok)
    if not _count(prompt, token, n):
        prompt = f"{token}\n" * n + prompt
    return tok.encode(prompt.replace(token, token * v.tokens_per_image))


@PROMPTS.register("paligemma")
def paligemma(v, tok, prompt: str, n: int) -> list[int]:
    """PaliGemmaProcessor: the image tokens (at the start where the prompt has none), BOS after the last of them,
    the prompt, a newline; each image token then tokens_per_image of them; tokenized with no BOS or EOS added."""
    token = _image_token(v, tok)
    if not _count(prompt, token, n):
        prompt = token * n + prompt
    end = prompt.rfind(token) + len(token)
    text = (prompt[:end] + _bos_text(tok) + prompt[end:] + "\n").replace(token, token * v.tokens_per_image)
    return [i for i, _ in tok.encode_offsets(text)]


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
def gemma3(v, tok, prompt: str, n: int) -> list[int]:
    """Gemma3Processor: each <start_of_image> (the tokenizer's boi_token) in the text becomes "\\n\\n", itself, the
    image token tokens_per_image times, <end_of_image> (eoi_token) and "\\n\\n"; then the text is tokenized as usual
    (BOS first). A prompt without them gets them at its start, one per image."""
    boi, eoi = _named_token(tok, "boi_token"), _named_token(tok, "eoi_token")
    if not _count(prompt, boi, n):
        prompt = boi * n + prompt
    return tok.encode(prompt.replace(boi, f"\n\n{boi}{_image_token(v, tok) * v.tokens_per_image}{eoi}\n\n"))
