"""A text prompt about images as the input_ids the family's transformers processor builds: each image's token
repeated once per feature the model writes there (the vision config's image_tokens: LLaVA's tokens_per_image for
every image, Qwen-VL's and GLM-4V's count from each image's grid; Idefics3's tiles and global image from each
image's size; the tiling families' layouts are tiled_layouts.py). `image_request` is the one call a command makes:
images and a prompt to the ids and the model's image arguments (the image processor's dict of generate's keyword
arguments: pixel_values, and image_grid_thw where the processor gives one), which the caller passes on whole;
`chat_request` the server's, for a conversation its chat template rendered."""
from __future__ import annotations

from ..errors import LlmarchError
from . import gemma4_images, mllama_images, tiled_layouts
from .idefics3_images import image_text
from .prompt_parts import PROMPTS, bos_text, count, expand, image_token, named_token, processor, substituted, vision_of

__all__ = ["PROMPTS", "VISION_START", "VISION_END", "image_request", "chat_request"]
# imported for what they register: the tiling families' layouts, Llama 3.2 Vision's and Gemma 4's processors and prompts
REGISTERING = (tiled_layouts, mllama_images, gemma4_images)


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
    token = getattr(layout, "placeholder", image_token)(v, tok)
    if text.count(token) != len(images):
        raise LlmarchError(f"the chat template wrote {text.count(token)} {token} token(s) for {len(images)} "
                           "image(s): it does not place images")
    bos = bos_text(tok, required=False)
    if not (bos and text.startswith(bos)):
        return layout(v, tok, text, images, arguments), arguments
    bos_id = tok.encode_offsets(bos)[0][0]
    # a layout that adds BOS itself (MllamaProcessor's) has a form for a text whose BOS the template wrote (after_bos)
    layout = getattr(layout, "after_bos", layout)
    ids = layout(v, tok, text[len(bos):], images, arguments)  # the tokenizer's own BOS, where it adds one
    return (ids if ids[:1] == [bos_id] else [bos_id] + ids), arguments


def _preprocess(model, tok, images: list):
    """The vision config and the images preprocessed to the model's image arguments."""
    cfg = model.config
    v = None if cfg.vision is None else vision_of(cfg.vision)
    if v is None or getattr(v, "held", False):
        raise LlmarchError(f"{cfg.name} reads no images (it has no vision tower that runs: config vision)")
    if cfg.hf_model_type not in PROMPTS:
        raise LlmarchError(f"images for a {cfg.hf_model_type!r} checkpoint are not supported; supported: "
                           f"{', '.join(PROMPTS.names())}")
    return v, processor(tok, cfg.hf_model_type, cfg.name, v)(images)


@PROMPTS.register("llava_onevision")
@PROMPTS.register("vipllava")
@PROMPTS.register("llava_next")
@PROMPTS.register("llava")
def llava(v, tok, prompt: str, images: list, arguments: dict) -> list[int]:
    """LlavaProcessor (VipLLaVA's too; LlavaNextProcessor's and LlavaOnevisionProcessor's, whose counts follow each
    image's size, or with several images to a OneVision prompt are one tile's and a newline): each image
    token in the text becomes its image's count of them, then the text is tokenized as usual (BOS first). A prompt
    without image tokens gets them at its start, each on its own line (LLaVA-1.5's "<image>\\n" layout)."""
    token, counts = image_token(v, tok), v.image_tokens(arguments)
    if not count(prompt, token, len(counts)):
        prompt = f"{token}\n" * len(counts) + prompt
    return tok.encode(expand(prompt, token, counts))


@PROMPTS.register("paligemma")
def paligemma(v, tok, prompt: str, images: list, arguments: dict) -> list[int]:
    """PaliGemmaProcessor: the image tokens (at the start where the prompt has none), BOS after the last of them,
    the prompt, a newline; each image token then its image's count of them; tokenized with no BOS or EOS added."""
    token, counts = image_token(v, tok), v.image_tokens(arguments)
    if not count(prompt, token, len(counts)):
        prompt = token * len(counts) + prompt
    end = prompt.rfind(token) + len(token)
    return [i for i, _ in tok.encode_offsets(expand(prompt[:end] + bos_text(tok) + prompt[end:] + "\n", token,
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
        token, counts = image_token(v, tok), v.image_tokens(arguments)
        if not count(prompt, token, len(counts)):
            prompt = (start + token + end) * len(counts) + prompt
        return tok.encode(expand(prompt, token, counts))
    return layout


# Qwen3.5's processor is Qwen3VLProcessor (transformers' AutoProcessor mapping)
for _type in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe", "qwen3_5", "qwen3_5_moe"):
    PROMPTS.register(_type)(qwen_vl(VISION_START, VISION_END))
# Qwen2_5OmniProcessor's names for them around each <|IMAGE|> (Qwen2.5-Omni's thinker)
PROMPTS.register("qwen2_5_omni_thinker")(qwen_vl("<|vision_bos|>", "<|vision_eos|>"))
# GLM-4V's chat template writes these around each <|image|>
for _type in ("glm4v", "glm4v_moe", "glm46v"):
    PROMPTS.register(_type)(qwen_vl("<|begin_of_image|>", "<|end_of_image|>"))


@PROMPTS.register("idefics3")
@PROMPTS.register("smolvlm")
def idefics3(v, tok, prompt: str, images: list, arguments: dict) -> list[int]:
    """Idefics3Processor, SmolVLMProcessor: each image token becomes the image's tiles' and global image's tokens
    (idefics3_images.py; the image tokens at the start where the prompt has none), then the text is tokenized as
    usual."""
    token, split = image_token(v, tok), processor(tok, "idefics3")
    return tok.encode(substituted(prompt, token, images,
                                  lambda image: image_text(*split.grid(image), token, v.tokens_per_image)))


@PROMPTS.register("gemma3")
def gemma3(v, tok, prompt: str, images: list, arguments: dict) -> list[int]:
    """Gemma3Processor: each <start_of_image> (the tokenizer's boi_token) in the text becomes "\\n\\n", itself, the
    image token tokens_per_image times, <end_of_image> (eoi_token) and "\\n\\n"; then the text is tokenized as usual
    (BOS first). A prompt without them gets them at its start, one per image."""
    boi, eoi, n = named_token(tok, "boi_token"), named_token(tok, "eoi_token"), len(images)
    if not count(prompt, boi, n):
        prompt = boi * n + prompt
    return tok.encode(prompt.replace(boi, f"\n\n{boi}{image_token(v, tok) * v.tokens_per_image}{eoi}\n\n"))


gemma3.placeholder = lambda v, tok: named_token(tok, "boi_token")  # what its chat template writes per image


@PROMPTS.register("gemma4")
def gemma4(v, tok, prompt: str, images: list, arguments: dict) -> list[int]:
    """Gemma4Processor: each image token (<|image|>, what its chat template writes per image) becomes boi_token, the
    image token once per pooled feature of its image (image_sizes'), eoi_token; then the text is tokenized as usual
    (BOS first). A prompt without them gets them at its start, one per image."""
    token, boi, eoi = image_token(v, tok), named_token(tok, "boi_token"), named_token(tok, "eoi_token")
    return tok.encode(substituted(prompt, token, v.image_tokens(arguments), lambda n: boi + token * n + eoi))
