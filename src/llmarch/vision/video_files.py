"""Videos read into their frames (PIL images) and frame rate: a directory of frame images, in the order of their file
names, at a rate the caller gives; or, where PyAV is installed (`import av`), a video file at its own rate, whose
frames are decoded only when the video processor has chosen them (qwen_video.py samples by the count, `pick` decodes
the chosen ones in one pass, as transformers' PyAV loader keeps only its sampled frames: a long video sent to the
server never sits in memory whole). Errors are one line: an empty directory, a file that is not an image, frames of
different sizes, a video file without PyAV."""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from ..errors import LlmarchError
from .image_files import read_image


@dataclass(frozen=True)
class Video:
    frames: list  # PIL images, all of one size (a file's: FileFrames, decoded when picked)
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
    sizes = [] if isinstance(frames, FileFrames) else sorted({frame.size for frame in frames})  # a stream's: one
    if len(sizes) > 1:
        raise LlmarchError(f"video {path}: its frames have different sizes {sizes} (width x height)")
    return Video(frames, float(fps), str(path))


class FileFrames:
    """A video file's frames, counted (its stream's frame count, transformers' total_num_frames; decoded and counted
    where the header has none) but not kept: `pick` decodes the chosen ones."""

    def __init__(self, source, name):
        self.source, self.name = source, name
        with self._open() as container:
            stream = container.streams.video[0]
            self.fps = float(stream.average_rate or 0) or 24.0
            self.count = int(stream.frames or 0) or sum(1 for _ in container.decode(stream))

    def __len__(self) -> int:
        return self.count

    def pick(self, index) -> list:
        """The frames at `index` (ascending frame numbers, repeats allowed) as PIL images, in one decoding pass."""
        import av

        wanted, got = {int(i) for i in index}, {}
        try:
            with self._open() as container:
                for i, frame in enumerate(container.decode(container.streams.video[0])):
                    if i in wanted:
                        got[i] = frame.to_image()
                    if len(got) == len(wanted):
                        break
        except av.error.FFmpegError as e:
            raise LlmarchError(f"video {self.name} cannot be decoded: {_first_line(e)}") from None
        if len(got) < len(wanted):
            raise LlmarchError(f"video {self.name} decodes to fewer frames than the {self.count} its header counts")
        return [got[int(i)] for i in index]

    def _open(self):
        import av

        if hasattr(self.source, "seek"):
            self.source.seek(0)
        try:
            return av.open(self.source if hasattr(self.source, "read") else str(self.source))
        except (av.error.FFmpegError, ValueError) as e:
            raise LlmarchError(f"video {self.name} cannot be decoded: {_first_line(e)}") from None


def pick(frames, index) -> list:
    """frames[i] for i in index: a list's, or a FileFrames' decoded in one pass."""
    return frames.pick(index) if isinstance(frames, FileFrames) else [frames[int(i)] for i in index]


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else repr(e)


def _decoded(path, name) -> tuple[FileFrames, float]:
    """A video file's (a path or a file object) frames, counted, not decoded (FileFrames), and its average frame
    rate, read by PyAV (transformers' 'pyav' backend)."""
    try:
        import av
    except ImportError:
        raise LlmarchError(f"video {name} is a file: reading video files needs PyAV (pip install av); give a "
                           "directory of frame images instead") from None
    try:
        frames = FileFrames(path, name)
    except (av.error.FFmpegError, IndexError, ValueError) as e:
        raise LlmarchError(f"video {name} cannot be decoded: {_first_line(e)}") from None
    if not len(frames):
        raise LlmarchError(f"video {name} holds no frames")
    return frames, frames.fps
