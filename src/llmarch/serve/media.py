"""What a chat hears and sees besides text, for `llmarch chat` (terminal.py) and the server (app.py): each
conversation's non-text parts, {"type": kind, kind: the read item} (images: PIL images, vision/image_files.py; audio:
16 kHz samples, data/wav.py; video: frames, vision/video_files.py), made into the ids and model arguments of the text
its chat template rendered, by the family's layout (vision/prompts.py chat_request, audio/prompts.py
chat_audio_request, vision/qwen_video.py chat_video_request)."""
from __future__ import annotations

from ..data.chat import encode_text
from ..errors import LlmarchError

KINDS = ("image", "audio", "video")  # the parts the chat template is handed, as transformers names them


def read_media(kind: str, source, name: str | None = None):
    """A part's item from a file path (or the server's bytes, named `name` in errors)."""
    if kind == "image":
        from ..vision.image_files import read_image

        return read_image(source, name)
    if kind == "audio":
        from ..data.wav import read_wav

        return read_wav(source, name)
    from ..vision.video_files import read_video

    return read_video(source, name=name)


def read_parts(messages: list[dict]) -> list[dict]:
    """The server's messages (chat_template.check_messages'), each media part's bytes (images.py) read; errors name
    the part by its place among the request's parts of its kind ("image 0 of the request")."""
    seen = {kind: 0 for kind in KINDS}

    def read(p):
        kind = p["type"]
        if not isinstance(p.get(kind), bytes):  # a client's own {"type": "image"} part: the server reads no paths
            openai = "input_audio" if kind == "audio" else f"{kind}_url"
            raise LlmarchError(f"a {kind} part is sent as OpenAI's {openai} part")
        seen[kind] += 1
        name = f"{seen[kind] - 1} of the request"
        return {**p, kind: read_media(kind, p[kind], f"audio {name}" if kind == "audio" else name)}

    return [{**m, "content": [read(p) if p["type"] in KINDS else p for p in m["content"]]}
            if isinstance(m["content"], list) else m for m in messages]


def chat_media_request(model, tok, text: str, messages: list[dict]) -> tuple[list[int], dict | None]:
    """(ids, the model's image, video or audio arguments; None without any) for `messages` rendered to `text`."""
    parts = [p for m in messages if isinstance(m["content"], list) for p in m["content"]]
    images, clips, videos = ([p[kind] for p in parts if p["type"] == kind] for kind in KINDS)
    if clips:
        from ..audio.prompts import chat_audio_request

        if images or videos:
            raise LlmarchError("a conversation hears audio clips or sees images and videos, not both")
        return chat_audio_request(model, tok, text, clips)
    if videos:
        from ..vision.qwen_video import chat_video_request

        return chat_video_request(model, tok, text, images, videos)
    if images:
        from ..vision.prompts import chat_request

        return chat_request(model, tok, text, images)
    # the template writes any BOS itself: no second one from the tokenizer (as transformers tokenizes it)
    return encode_text(tok, text), None
