"""Idefics2's images from files (Idefics2ImageProcessor, its PIL variant) and prompt layout (Idefics2Processor): each
image converted to RGB as the processor's load_image does (transparency dropped, not composited), optionally split
into its four quarters followed by itself (do_image_splitting), each piece resized with the config's Pillow filter
(bilinear) so that its longer edge is at most size's longest_edge (the other scaled, truncated) and each edge at
least its shortest_edge, rescaled and normalized (preprocess.py's steps), then all
zero-padded at the bottom and right to the largest height and width among them, pixel_attention_mask 1 on each
one's own pixels. The sizes need not be multiples of the patch: the model drops the remainder (its convolution and
patch mask do). In the text each image token becomes <fake_token_around_image>, the image token image_seq_len
times (the resampler's latents) and <fake_token_around_image>, five times over when split; two fake tokens in a
row become one, and one directly before a character other than a space or '<' gets a space after it."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import LlmarchError
from .preprocess import BILINEAR, HALF, PROCESSORS, ResizeCropNormalize

FAKE = "<fake_token_around_image>"


@dataclass(frozen=True)
class Idefics2Images:
    shortest: int | None  # size's shortest_edge and longest_edge (do_resize); None: no resize
    longest: int | None
    split: bool  # do_image_splitting
    pad: bool  # do_pad
    steps: ResizeCropNormalize  # the Pillow filter, rescale and normalization (no resize or crop)

    @classmethod
    def from_config(cls, config: dict) -> Idefics2Images:
        c = {**_DEFAULTS, **{k: v for k, v in config.items() if v is not None}}
        size = c["size"]
        if not (isinstance(size, dict) and set(size) == {"shortest_edge", "longest_edge"}
                and all(isinstance(x, int) and x > 0 for x in size.values())):
            raise LlmarchError(f"{config.get('image_processor_type')}: size {size!r} must be a positive shortest_edge "
                               "and longest_edge")
        steps, resize = ResizeCropNormalize.without_resize(c), bool(c["do_resize"])
        return cls(shortest=size["shortest_edge"] if resize else None, longest=size["longest_edge"] if resize else None,
                   split=bool(c["do_image_splitting"]), pad=bool(c["do_pad"]), steps=steps)

    def pieces(self, image) -> list:
        """One image's pieces (PIL images): its quarters and itself when split, else itself; resized."""
        image = image.convert("RGB")  # Idefics2Processor's load_image, before the image processor: no compositing
        if self.split:
            w, h = image.width // 2, image.height // 2
            image = [image.crop(box) for box in ((0, 0, w, h), (w, 0, image.width, h), (0, h, w, image.height),
                                                 (w, h, image.width, image.height))] + [image]
        return [self._resize(piece) for piece in (image if self.split else [image])]

    def __call__(self, images) -> dict:
        """PIL images -> pixel_values (pieces, 3, H, W) float32 zero-padded to the largest, pixel_attention_mask
        (pieces, H, W)."""
        out = [self.steps.one(piece) for image in images for piece in self.pieces(image)]
        if not self.pad and len({a.shape for a in out}) > 1:
            raise LlmarchError(f"the images preprocess to different sizes {sorted({a.shape for a in out})} and "
                               "do_pad is off")
        height, width = max(a.shape[1] for a in out), max(a.shape[2] for a in out)
        pixels = np.zeros((len(out), 3, height, width), dtype=np.float32)
        mask = np.zeros((len(out), height, width), dtype=np.int64)
        for i, a in enumerate(out):
            pixels[i, :, :a.shape[1], :a.shape[2]], mask[i, :a.shape[1], :a.shape[2]] = a, 1
        return {"pixel_values": torch.from_numpy(pixels), "pixel_attention_mask": torch.from_numpy(mask)}

    def _resize(self, image):
        if self.longest is None:
            return image
        height, width = image.height, image.width
        aspect = width / height
        if width >= height and width > self.longest:
            width, height = self.longest, int(self.longest / aspect)
        elif height > width and height > self.longest:
            height, width = self.longest, int(self.longest * aspect)
        height, width = max(height, self.shortest), max(width, self.shortest)
        return image.resize((width, height), resample=self.steps.resample)


def image_text(image: str, per: int, split: bool) -> str:
    """One image token's text, before the fake tokens are merged (Idefics2Processor's image_str)."""
    return f"{FAKE}{image * per}{FAKE}" * (5 if split else 1)


def tidy(text: str) -> str:
    """Idefics2Processor's clean-up of the expanded text: adjacent fake tokens merged, a space after a fake token
    that a word follows."""
    return re.sub(rf"{re.escape(FAKE)}(?=[^\s<])", FAKE + " ", text.replace(FAKE + FAKE, FAKE))


# Idefics2ImageProcessorPil's defaults
_DEFAULTS = dict(do_convert_rgb=True, do_resize=True, size={"shortest_edge": 378, "longest_edge": 980},
                 resample=BILINEAR, do_rescale=True, rescale_factor=1 / 255, do_normalize=True, image_mean=HALF,
                 image_std=HALF, do_pad=True, do_image_splitting=False)
PROCESSORS.register("Idefics2ImageProcessor")(Idefics2Images.from_config)
