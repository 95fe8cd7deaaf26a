"""DeepSeek-VL's and Janus's image processor (transformers' DeepseekVLImageProcessorPil, JanusImageProcessorPil; the
same steps as DeepSeek-VL's own VLMImageProcessor, Lu et al. 2024, "DeepSeek-VL", \u00a72.1): each image resized with
the config's Pillow filter so that its longer side is the (square) size, each side round(side x size / longer) but no
less than min_size; then centred on a square of the longer side filled with the mean colour, int(mean x 255) per
channel (do_pad); then rescaled and normalized (preprocess.py's steps). The classes convert nothing to RGB unless
do_convert_rgb says so (transformers then fails on RGBA and grayscale images; llmarch refuses them in one line)."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import LlmarchError
from .image_files import to_rgb
from .preprocess import _BASE, BICUBIC, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, ResizeCropNormalize, _channels


@dataclass(frozen=True)
class SquareImages:
    side: int | None  # size's height (= width); None: no resize (do_resize false)
    min_size: int
    fill: tuple[int, ...] | None  # the padding's colour; None: no padding (do_pad false)
    resample: int
    steps: ResizeCropNormalize  # RGB conversion, rescale and normalization (no resize or crop)

    @classmethod
    def from_config(cls, config: dict) -> SquareImages:
        c = {**_DEFAULTS, **{k: v for k, v in config.items() if v is not None}}
        size, kind = c["size"], config.get("image_processor_type")
        side = size if isinstance(size, int) else size.get("height") if isinstance(size, dict) and set(size) == {
            "height", "width"} and size["height"] == size["width"] else None
        if not isinstance(side, int) or isinstance(side, bool) or side <= 0:
            raise LlmarchError(f"{kind}: size {size!r} must be a square (height = width, positive)")
        if not isinstance(c["min_size"], int) or c["min_size"] < 1:
            raise LlmarchError(f"{kind}: min_size {c['min_size']!r} must be a positive integer")
        # transformers' __init__ takes the colour from image_mean, whatever background_color the config saved
        fill = tuple(int(x * 255) for x in _channels(c["image_mean"]))
        return cls(side=side if c["do_resize"] else None, min_size=c["min_size"], fill=fill if c["do_pad"] else None,
                   resample=int(c["resample"]), steps=ResizeCropNormalize.without_resize(c))

    def square(self, image):
        """One PIL image resized (longer side to `side`) and padded to a square, as the class's resize and
        pad_to_square do on its uint8 array."""
        image = to_rgb(image) if self.steps.rgb else image
        if image.mode != "RGB":
            raise LlmarchError(f"an image of mode {image.mode}, and the image processor does not convert to RGB")
        if self.side is not None:
            delta = self.side / max(image.height, image.width)  # as the class computes it, for the same rounding
            h, w = (max(round(x * delta), self.min_size) for x in (image.height, image.width))
            image = image.resize((w, h), resample=self.resample)
        return image if self.fill is None else pad_square(image, self.fill)

    def __call__(self, images) -> dict:
        """PIL images -> the model's image arguments (preprocess.py): pixel_values (N, 3, size, size) float32."""
        return self.steps([self.square(image) for image in images])


def pad_square(image, fill: tuple[int, ...]):
    """pad_to_square: a PIL image centred on a square of its longer side filled with `fill` (the offsets rounded
    down), itself where it is square."""
    from PIL import Image

    side = max(image.size)
    if image.width == image.height:
        return image
    canvas = Image.new(image.mode, (side, side), fill)
    canvas.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return canvas


# the classes' defaults (transformers' DeepseekVLImageProcessorPil and JanusImageProcessorPil are the same); registered
# in PROCESSORS by interop/deepseek_vl.py and janus.py
_DEFAULTS = dict(_BASE, do_convert_rgb=False, size={"height": 384, "width": 384}, min_size=14, resample=BICUBIC,
                 do_pad=True, image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD)
