"""Image files read into Pillow images, upright (the EXIF orientation applied, as transformers' load_image does),
their pixels decoded here so that a truncated or foreign file fails with one line, not inside the preprocessing."""
from __future__ import annotations

import io
from pathlib import Path

from ..errors import LlmarchError


def read_image(source: str | Path | bytes, name: str | None = None):
    """A PIL image from a file path or the file's bytes (name: how errors call it, default the path). Its mode is
    kept (RGBA, L, P ...): the checkpoint's image processor converts it to RGB (preprocess.py)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    name = name or str(source)
    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
    except FileNotFoundError:
        raise LlmarchError(f"image {name}: no such file") from None
    except OSError as e:
        raise LlmarchError(f"cannot read image {name}: {e.strerror or type(e).__name__}") from None
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        return ImageOps.exif_transpose(image)
    except Image.DecompressionBombError as e:  # Pillow's limit on pixels, against a small file of huge size
        raise LlmarchError(f"image {name} is too large to decode: {e}") from None
    except UnidentifiedImageError:
        raise LlmarchError(f"image {name} is not an image file Pillow reads (PNG, JPEG, ...)") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise LlmarchError(f"image {name} cannot be decoded: {str(e).splitlines()[0] if str(e) else e!r}") from None


def to_rgb(image):
    """transformers' convert_to_rgb: an image with transparency is composited onto white, others converted."""
    from PIL import Image

    if "A" in image.getbands() or image.info.get("transparency") is not None:
        image = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image).convert("RGB")
    return image.convert("RGB")
