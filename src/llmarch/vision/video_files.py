"""Videos read into their frames (PIL images) and frame rate: a directory of frame images, in the order of their file
names, at a rate the caller gives; or, where PyAV is installed (`import av`), a video file, every frame decoded at the
file's own rate (the video processor then samples them: qwen_video.py). Errors are one line: an empty directory, a
file that is not an image, frames of different sizes, a video file without PyAV."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from ..errors import LlmarchError
from .image_files import read_image


@dataclass(frozen=True)
class Video:
    frames: list  # PIL images, all of one size
    fps: float  # the frames' rate: timestamps (frame index / fps) and fps-based sampling read it
    name: str


def read_video(path: str | Path | bytes, fps: float = 2.0, name: str | None = None) -> Video:
    """The frames of `path`: a directory's image files sorted by name, at `fps` frames a second; or a video file
    (PyAV), at its own rate, from its path or its bytes (name: how errors call it, default the path)."""
    if not fps > 0:
        raise LlmarchError(f"a video's frame rate must be positive, got {fps}")
    if isinstance(path, bytes):
        frames, fps = _decoded(io.BytesIO(path), name or "data")
        return Video(frames, float(fps), name or "data")
    path = Path(path)
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if not f.name.startswith("."))
        if not files:
            raise LlmarchError(f"video {path}: the directory holds no frame images")
        frames = [read_image(f) for f in files]
    elif path.is_file():
        frames, fps = _decoded(path, name or path)
    else:
        raise LlmarchError(f"video {path}: no such file or directory")
    sizes = sorted({frame.size for frame in frames})
    if len(sizes) > 1:
        raise LlmarchError(f"video {path}: its frames have different sizes {sizes} (width x height)")
    return Video(frames, float(fps), str(path))


def _decoded(path, name) -> tuple[list, float]:
    """Every frame of a video file (a path or a file object) and its average frame rate, decoded by PyAV
    (transformers' 'pyav' backend)."""
    try:
        import av
    except ImportError:
        raise LlmarchError(f"video {name} is a file: reading video files needs PyAV (pip install av); give a "
                           "directory of frame images instead") from None
    try:
        with av.open(path if hasattr(path, "read") else str(path)) as container:
            stream = container.streams.video[0]
            frames = [frame.to_image() for frame in container.decode(stream)]
            fps = float(stream.average_rate or 0) or 24.0
    except (av.error.FFmpegError, IndexError, ValueError) as e:
        raise LlmarchError(f"video {name} cannot be decoded: {str(e).splitlines()[0] if str(e) else e!r}") from None
    if not frames:
        raise LlmarchError(f"video {name} holds no frames")
    return frames, fps
