"""Images in chat requests: OpenAI's `image_url` content parts whose URL is the image itself
(`data:image/png;base64,...`), for a checkpoint that reads images (vision/prompts.py chat_request). The server
fetches nothing: an http(s) URL is refused in one line, so no request makes it download at run time."""
from __future__ import annotations

import base64
import binascii

from .requests import BadRequest


def chat_images(messages) -> tuple[object, list[bytes]]:
    """messages with each image_url part made a {"type": "image"} part (what transformers' chat templates for
    vision-language models place an image token for), and the images' bytes in order. Messages without image
    parts (and anything not a list of messages, which the template's check names) are passed on as they are."""
    if not isinstance(messages, list):
        return messages, []
    out, images = [], []
    for i, m in enumerate(messages):
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list) and any(isinstance(p, dict) and p.get("type") == "image_url" for p in content):
            parts = []
            for p in content:
                if isinstance(p, dict) and p.get("type") == "image_url":
                    images.append(_data_url(p.get("image_url"), f"messages[{i}]"))
                    p = {"type": "image"}
                parts.append(p)
            m = {**m, "content": parts}
        out.append(m)
    return out, images


def _data_url(image_url, where: str) -> bytes:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str):
        raise BadRequest(f"{where}: an image_url part needs image_url.url", "messages")
    if url.startswith(("http://", "https://")):
        raise BadRequest(f"{where}: this server fetches no URLs; send the image in the request, as a "
                         "data:image/...;base64,... URL", "messages")
    head, _, data = url.partition(",")
    if not (head.startswith("data:image/") and head.endswith(";base64")):
        raise BadRequest(f"{where}: image_url.url must be a data:image/...;base64,... URL", "messages")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{where}: the image's base64 does not decode", "messages") from None
