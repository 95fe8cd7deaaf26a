"""Images, videos and audio in chat requests: OpenAI's `image_url` content parts whose URL is the image itself
(`data:image/png;base64,...`), for a checkpoint that reads images (vision/prompts.py chat_request), `video_url`
parts alike (`data:video/mp4;base64,...`, vLLM's part; decoded by PyAV) for a Qwen-VL checkpoint, and `input_audio`
parts (`{"data": base64 WAV, "format": "wav"}`) for one that hears clips (audio/prompts.py chat_audio_request).
The server fetches nothing: an http(s) URL is refused in one line, so no request makes it download at run time."""
from __future__ import annotations

import base64
import binascii

from .requests import BadRequest


def chat_images(messages):
    """messages with each image_url part made an {"type": "image", "image": its bytes} part and each input_audio part
    an {"type": "audio", "audio": its bytes} part (what transformers' chat templates for vision- and audio-language
    models place a token for; media.py read_parts reads the bytes). Messages without such parts (and anything not a
    list of messages, which the template's check names) are passed on as they are."""
    if not isinstance(messages, list):
        return messages
    out = []
    for i, m in enumerate(messages):
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list) and any(isinstance(p, dict) and p.get("type") in PARTS for p in content):
            parts = []
            for p in content:
                if isinstance(p, dict) and p.get("type") in PARTS:
                    kind, read = PARTS[p["type"]]
                    p = {"type": kind, kind: read(p.get(p["type"]), f"messages[{i}]")}
                parts.append(p)
            m = {**m, "content": parts}
        out.append(m)
    return out


def _data_url(kind: str):
    """A reader of OpenAI's {kind}_url part (image_url; video_url, as vLLM takes it): its URL a data:{kind}/... URL."""
    def read(part, where: str) -> bytes:
        url = part.get("url") if isinstance(part, dict) else part
        if not isinstance(url, str):
            raise BadRequest(f"{where}: the {kind}_url part needs {kind}_url.url", "messages")
        if url.startswith(("http://", "https://")):
            raise BadRequest(f"{where}: this server fetches no URLs; send the {kind} in the request, as a "
                             f"data:{kind}/...;base64,... URL", "messages")
        head, _, data = url.partition(",")
        if not (head.startswith(f"data:{kind}/") and head.endswith(";base64")):
            raise BadRequest(f"{where}: {kind}_url.url must be a data:{kind}/...;base64,... URL", "messages")
        return _decode(data, f"{where}: the {kind}'s base64")
    return read


def _input_audio(audio, where: str) -> bytes:
    """OpenAI's input_audio part: {"data": base64, "format": "wav" or "mp3"}; WAV is read (data/wav.py), MP3 not."""
    if not (isinstance(audio, dict) and isinstance(audio.get("data"), str)):
        raise BadRequest(f"{where}: an input_audio part needs input_audio.data, the clip in base64", "messages")
    if audio.get("format") != "wav":
        raise BadRequest(f"{where}: input_audio.format {audio.get('format')!r} is not read; send a 16 kHz mono PCM "
                         "WAV clip, format 'wav'", "messages")
    return _decode(audio["data"], f"{where}: the clip's base64")


def _decode(data: str, what: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{what} does not decode", "messages") from None


# OpenAI's part type: (the part type transformers' templates read, the reader of its bytes)
PARTS = {"image_url": ("image", _data_url("image")), "video_url": ("video", _data_url("video")),
         "input_audio": ("audio", _input_audio)}
