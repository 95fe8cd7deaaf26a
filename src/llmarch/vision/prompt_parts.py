"""What every image prompt layout (prompts.py, tiled_layouts.py) shares: the PROMPTS registry, keyed by the
checkpoint's HF model type (config hf_model_type) as interop's families are, whose entries map (vision config,
tokenizer, prompt, PIL images, their image arguments) to the ids the family's transformers processor builds; the
checkpoint's image processor; its named tokens; the substitution of each image's text for its placeholder."""
from __future__ import annotations

import json

from ..errors import LlmarchError
from ..registry import Registry
from .config import vision_config
from .gemma4_config import gemma4_vision_config, is_gemma4
from .mllama_config import is_mllama, mllama_vision_config
from .pixtral_config import is_pixtral, pixtral_vision_config
from .qwen_config import is_qwen, qwen_vision_config
from .tiled_images import TiledImages

PROMPTS: Registry = Registry("image prompt layout")


def vision_of(data: dict):
    """ModelConfig.vision as its tower's config: Qwen-VL's, Pixtral's, Llama 3.2 Vision's, Gemma 4's or the others'."""
    return qwen_vision_config(data) if is_qwen(data) else pixtral_vision_config(data) if is_pixtral(data) else \
        mllama_vision_config(data) if is_mllama(data) else gemma4_vision_config(data) if is_gemma4(data) else \
        vision_config(data)


def processor(tok, kind: str, where: str = "the tokenizer", v=None):
    """The checkpoint's image processor (from the tokenizer's side files), with what the family's transformers
    processor passes it on every call over its config (the layout's images_kwargs: InternVLProcessor's
    crop_to_patches; a callable of (vision config, tokenizer) where the processor's own config sets them, as
    PixtralProcessor's patch_size)."""
    from .preprocess import image_processor_config, processor_for

    config = image_processor_config(getattr(tok, "side_files", {}), where)
    kwargs = getattr(PROMPTS[kind], "images_kwargs", {})
    return processor_for({**config, **(kwargs(v, tok) if callable(kwargs) else kwargs)})


def image_token(v, tok) -> str:
    text = tok.token_text(v.image_token_id) if v.image_token_id < tok.vocab_size else ""
    if not text:
        raise LlmarchError(f"the tokenizer has no text for the image token (id {v.image_token_id})")
    return text


def count(prompt: str, token: str, n: int, item: str = "image") -> int:
    """How many `token`s the prompt holds: none, or one per item (image, audio clip, video)."""
    found = prompt.count(token)
    if found not in (0, n):
        raise LlmarchError(f"the prompt holds {found} {token} token(s) for {n} {item}(s): one per {item}, or none")
    return found


def expand(text: str, token: str, counts: list[int]) -> str:
    """The k-th `token` in text repeated counts[k] times (text holds len(counts) of them)."""
    pieces = text.split(token)
    return pieces[0] + "".join(token * n + piece for n, piece in zip(counts, pieces[1:]))


def bos_text(tok, required: bool = True) -> str | None:
    """tokenizer_config.json's bos_token (a string, or an AddedToken's content)."""
    bos = json.loads(getattr(tok, "side_files", {}).get("tokenizer_config.json", b"{}")).get("bos_token")
    bos = bos.get("content") if isinstance(bos, dict) else bos
    if not bos and required:
        raise LlmarchError("the tokenizer names no bos_token (tokenizer_config.json), which the prompt needs")
    return bos


def named_token(tok, key: str) -> str:
    """tokenizer_config.json's `key` token (Gemma 3's boi_token, eoi_token), at its top level or among
    extra_special_tokens."""
    config = json.loads(getattr(tok, "side_files", {}).get("tokenizer_config.json", b"{}"))
    extra = config.get("extra_special_tokens")
    text = config.get(key) or (extra.get(key) if isinstance(extra, dict) else None)
    text = text.get("content") if isinstance(text, dict) else text
    if not text:
        raise LlmarchError(f"the tokenizer names no {key} (tokenizer_config.json), which the image prompt needs")
    return text


def tiled(tok, kind: str, tiles: type = TiledImages):
    """The checkpoint's image processor, which must be `tiles` (GotOcr2ImageProcessor's by default): the layout
    counts its tiles."""
    split = processor(tok, kind)
    if not isinstance(split, tiles):
        raise LlmarchError(f"{kind}'s image prompt follows the tiles of {tiles.__name__}; the checkpoint names "
                           f"another image processor ({type(split).__name__})")
    return split


def substituted(prompt: str, token: str, items: list, text_of, lead: str = "") -> str:
    """The prompt with its k-th `token` replaced by text_of(items[k]) (a prompt holding none gets one per item at its
    start, each followed by `lead`, as the family's chat template writes an image part before the text)."""
    if not count(prompt, token, len(items)):
        prompt = (token + lead) * len(items) + prompt
    first, *rest = prompt.split(token)
    return first + "".join(text_of(item) + text for item, text in zip(items, rest))
