"""Images to pixel_values as a checkpoint's own image processor makes them, read from its preprocessor_config.json
(or, as transformers 5 saves a processor, processor_config.json's `image_processor`). PROCESSORS is keyed by the
config's image_processor_type; an entry builds, from that config, a callable from PIL images to the model's image
arguments: a dict of llmarch.generate's (and TransformerLM.forward's) keyword arguments, which every caller passes on
whole. Registered here: the resize-crop-normalize pipeline of transformers' PIL image processors
(image_processing_backends.PilBackend) for CLIP (LLaVA-1.5), SigLIP (PaliGemma) and Gemma 3 without pan-and-scan:
RGB conversion (transparency composited onto white), resize with the named Pillow filter to a fixed size or the
shortest edge, a center crop, rescale (in float64, then float32) and normalization by the mean and std, giving
pixel_values (N, 3, H, W) float32; and Qwen2VLImageProcessor (Qwen2-VL's, Qwen2.5-VL's and Qwen3-VL's, whose
processors name no other), images of any size as qwen_pixels.py cuts them, giving pixel_values (patches, patch_dim)
and image_grid_thw (N, 3); Glm4vImageProcessor (GLM-4.1V's, GLM-4.5V's; Glm46VImageProcessor is the same class
renamed) the same, sized as glm4v_pixels.py sizes them."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import torch

from ..errors import LlmarchError
from ..registry import Registry
from .glm4v_pixels import glm4v_pixels
from .image_files import to_rgb
from .qwen_pixels import qwen_vl_pixels

PREPROCESSOR_FILE, PROCESSOR_FILE = "preprocessor_config.json", "processor_config.json"
PROCESSORS: Registry = Registry("image processor")

OPENAI_CLIP_MEAN, OPENAI_CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)  # IMAGENET_STANDARD_MEAN and _STD
BILINEAR, BICUBIC = 2, 3  # PIL.Image.Resampling values, as the configs write `resample`


def side_config(side_files: dict[str, bytes], name: str) -> dict:
    """The JSON object a checkpoint's HF side file `name` holds (data/tokenizer.py HF_SIDE_FILES), {} where it has
    none; a file that is not one is a one-line error."""
    try:
        config = json.loads(side_files.get(name, b"{}"))
    except (ValueError, UnicodeDecodeError) as e:
        raise LlmarchError(f"cannot read the checkpoint's {name}: {e}") from None
    if not isinstance(config, dict):
        raise LlmarchError(f"the checkpoint's {name} holds a JSON {type(config).__name__}, not an object")
    return config


def image_processor_config(side_files: dict[str, bytes], where: str) -> dict:
    """The image processor's config among a checkpoint's HF side files (data/tokenizer.py HF_SIDE_FILES)."""
    if PREPROCESSOR_FILE in side_files:
        return side_config(side_files, PREPROCESSOR_FILE)
    nested = side_config(side_files, PROCESSOR_FILE).get("image_processor")
    if not isinstance(nested, dict):
        raise LlmarchError(f"{where} has no {PREPROCESSOR_FILE} (nor an image_processor in {PROCESSOR_FILE}): "
                           "how its images are preprocessed is unknown")
    return nested


def processor_for(config: dict):
    """The callable images -> pixel_values that config's image_processor_type names. transformers' fast
    (torchvision) and PIL classes of one processor read the same config: the suffix is dropped. An older config
    names a feature extractor (CLIPFeatureExtractor), which AutoImageProcessor reads as the image processor."""
    kind = str(config.get("image_processor_type")
               or str(config.get("feature_extractor_type", "")).replace("FeatureExtractor", "ImageProcessor"))
    for suffix in ("Fast", "Pil"):
        kind = kind.removesuffix(suffix)
    if kind not in PROCESSORS:
        raise LlmarchError(f"image processor {kind or '(no image_processor_type)'!r} is not supported; supported: "
                           f"{', '.join(PROCESSORS.names())}")
    return PROCESSORS[kind](config)


@dataclass(frozen=True)
class ResizeCropNormalize:
    """PilBackend._preprocess: each image converted to RGB, resized, center-cropped, rescaled, normalized."""
    rgb: bool
    size: dict | None  # {"height", "width"} or {"shortest_edge"}; None: no resize
    resample: int
    crop: tuple[int, int] | None  # (height, width)
    rescale: float | None
    mean_std: tuple[tuple[float, ...], tuple[float, ...]] | None

    @classmethod
    def from_config(cls, defaults: dict, config: dict, refused: tuple[str, ...] = ()) -> ResizeCropNormalize:
        c = {**defaults, **{k: v for k, v in config.items() if v is not None}}
        if on := [k for k in refused if c.get(k)]:
            raise LlmarchError(f"{config.get('image_processor_type')}: {', '.join(on)} is not supported")
        return replace(cls.without_resize(c), size=_size(c["size"], c["default_to_square"]) if c["do_resize"] else None,
                       crop=_crop(c.get("crop_size")) if c.get("do_center_crop") else None)

    @classmethod
    def without_resize(cls, c: dict) -> ResizeCropNormalize:
        """The RGB conversion, rescale and normalization of a config `c` (the class's defaults merged in), no resize
        or crop: the per-tile steps of a processor that resizes and cuts its tiles itself."""
        return cls(rgb=bool(c["do_convert_rgb"]), size=None, resample=int(c["resample"]), crop=None,
                   rescale=float(c["rescale_factor"]) if c["do_rescale"] else None,
                   mean_std=(tuple(_channels(c["image_mean"])), tuple(_channels(c["image_std"])))
                   if c["do_normalize"] else None)

    def __call__(self, images) -> dict[str, torch.Tensor]:
        """PIL images -> {"pixel_values": (N, 3, H, W) float32} (every image must come out the same size)."""
        out = [self.one(image) for image in images]
        if len({a.shape for a in out}) > 1:
            raise LlmarchError(f"the images preprocess to different sizes {sorted({a.shape for a in out})}")
        return {"pixel_values": torch.from_numpy(np.stack(out))}

    def one(self, image) -> np.ndarray:
        if self.rgb:
            image = to_rgb(image)
        elif image.mode != "RGB":
            raise LlmarchError(f"an image of mode {image.mode}, and the image processor does not convert to RGB")
        if self.size is not None:
            h, w = _resized(self.size, image.height, image.width)
            image = image.resize((w, h), resample=self.resample)
        x = np.moveaxis(np.asarray(image), -1, 0)  # (3, H, W) uint8
        if self.crop is not None:
            x = _center_crop(x, *self.crop)
        if self.rescale is not None:
            x = (x.astype(np.float64) * self.rescale).astype(np.float32)  # transformers' rescale: float64, then cast
        x = x.astype(np.float32)
        if self.mean_std is not None:
            mean, std = (np.asarray(m, dtype=np.float32)[:, None, None] for m in self.mean_std)
            x = (x - mean) / std
        return x


def _size(size, default_to_square: bool) -> dict:
    """get_size_dict: an int is a square (default_to_square) or the shortest edge."""
    if isinstance(size, int):
        return {"height": size, "width": size} if default_to_square else {"shortest_edge": size}
    if isinstance(size, dict) and set(size) in ({"height", "width"}, {"shortest_edge"}):
        return {k: int(v) for k, v in size.items()}
    raise LlmarchError(f"image processor size {size!r}: only height and width, or shortest_edge, are supported")


def _crop(size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    if isinstance(size, dict) and set(size) == {"height", "width"}:
        return int(size["height"]), int(size["width"])
    raise LlmarchError(f"image processor crop_size {size!r}: only an int or height and width are supported")


def _channels(values) -> list[float]:
    return [float(values)] * 3 if isinstance(values, (int, float)) else [float(v) for v in values]


def _resized(size: dict, height: int, width: int) -> tuple[int, int]:
    """get_resize_output_image_size: the shortest edge to the size, the other scaled and truncated."""
    if "height" in size:
        return size["height"], size["width"]
    s = size["shortest_edge"]
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(s * long / short)
    return (new_long, s) if width <= height else (s, new_long)


def _center_crop(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """image_transforms.center_crop on (C, H, W): the window starting at (H - h) // 2, zero-padded (centred,
    rounding the padding up) where the image is smaller than the crop."""
    _, h, w = x.shape
    if h < height or w < width:
        ph, pw = max(height, h), max(width, w)
        padded = np.zeros((x.shape[0], ph, pw), dtype=x.dtype)
        top, left = -(-(ph - h) // 2), -(-(pw - w) // 2)
        padded[:, top:top + h, left:left + w] = x
        x, h, w = padded, ph, pw
    top, left = (h - height) // 2, (w - width) // 2
    return x[:, top:top + height, left:left + width]


# the classes' defaults (transformers' CLIPImageProcessorPil, SiglipImageProcessorPil, Gemma3ImageProcessorPil)
_BASE = dict(do_convert_rgb=True, do_resize=True, do_rescale=True, rescale_factor=1 / 255, do_normalize=True)
PROCESSORS.register("CLIPImageProcessor")(partial(ResizeCropNormalize.from_config, dict(
    _BASE, size={"shortest_edge": 224}, default_to_square=False, resample=BICUBIC, do_center_crop=True,
    crop_size={"height": 224, "width": 224}, image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD)))
PROCESSORS.register("SiglipImageProcessor")(partial(ResizeCropNormalize.from_config, dict(
    _BASE, size={"height": 224, "width": 224}, default_to_square=False, resample=BICUBIC, image_mean=HALF,
    image_std=HALF)))
PROCESSORS.register("Gemma3ImageProcessor")(partial(ResizeCropNormalize.from_config, dict(
    _BASE, size={"height": 224, "width": 224}, default_to_square=True, resample=BILINEAR, image_mean=HALF,
    image_std=HALF), refused=("do_pan_and_scan",)))


@PROCESSORS.register("Qwen2VLImageProcessor")
def qwen_vl(config: dict, pixels=qwen_vl_pixels):
    """Qwen2VLImageProcessor (qwen_pixels.py), Glm4vImageProcessor (glm4v_pixels.py): images of any size, each its
    own grid of patches."""
    def images_to_arguments(images) -> dict[str, torch.Tensor]:
        pixel_values, grid = pixels(images, config)
        return {"pixel_values": pixel_values, "image_grid_thw": grid}

    return images_to_arguments


for _name in ("Glm4vImageProcessor", "Glm46VImageProcessor"):
    PROCESSORS.register(_name)(partial(qwen_vl, pixels=glm4v_pixels))
