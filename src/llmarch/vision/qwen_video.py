"""Qwen2-VL's, Qwen2.5-VL's and Qwen3-VL's videos from frames (video_files.py) to the model's video arguments and the
prompt's ids, as transformers' Qwen2VLVideoProcessor and Qwen3VLVideoProcessor, and their processors' layouts, make
them. A video processor samples the frames (Qwen2-VL's: all of them unless do_sample_frames; Qwen3-VL's: `fps` a
second, evenly over the video, at least min_frames), resizes every frame to one size (smart_resize over the frames'
area; Qwen3-VL's counts the frames too), rescales and normalizes them as the image processor does (qwen_pixels.py:
PIL bicubic; transformers' video processors resize with torchvision, which may differ by a level of rounding), pads
them with the last frame to a multiple of temporal_patch_size and cuts temporal_patch_size x patch x patch patches:
pixel_values_videos (P, patch_dim) and video_grid_thw (N, 3). Qwen2.5-VL's processor adds second_per_grid_ts, the
seconds one temporal patch spans (temporal_patch_size / the sampled frames' rate), which its M-RoPE reads. The
layouts: each <|video_pad|> becomes t (h / m) (w / m) of them (Qwen2-VL, Qwen2.5-VL); Qwen3-VL's becomes each temporal
patch's "<{seconds:.1f} seconds>" timestamp (its frames' mean time) then <|vision_start|>, its (h / m) (w / m) tokens,
<|vision_end|> (the chat template's <|vision_start|><|video_pad|><|vision_end|> first collapsed to <|video_pad|>)."""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import LlmarchError
from ..registry import Registry
from .prompt_parts import count
from .prompts import VISION_END, VISION_START, image_request
from .qwen_config import is_qwen, qwen_vision_config
from .qwen_pixels import frame_array, patchify, settings, smart_resize
from .video_files import pick

VIDEO_PROCESSORS: Registry = Registry("video processor")
VIDEO_PREPROCESSOR_FILE = "video_preprocessor_config.json"
# the video processor a checkpoint's model type takes where its configs name none (AutoVideoProcessor's mapping)
BY_MODEL_TYPE = {"qwen2_vl": "Qwen2VLVideoProcessor", "qwen2_5_vl": "Qwen2VLVideoProcessor",
                 "qwen3_vl": "Qwen3VLVideoProcessor", "qwen3_vl_moe": "Qwen3VLVideoProcessor",
                 "qwen3_5": "Qwen3VLVideoProcessor", "qwen3_5_moe": "Qwen3VLVideoProcessor"}


def video_processor_config(side_files: dict[str, bytes]) -> dict:
    """The video processor's config among a checkpoint's HF side files: video_preprocessor_config.json, else
    processor_config.json's video_processor, else (as transformers falls back) preprocessor_config.json."""
    from .preprocess import PREPROCESSOR_FILE, PROCESSOR_FILE, side_config

    if VIDEO_PREPROCESSOR_FILE in side_files:
        return side_config(side_files, VIDEO_PREPROCESSOR_FILE)
    nested = side_config(side_files, PROCESSOR_FILE).get("video_processor")
    return nested if isinstance(nested, dict) else side_config(side_files, PREPROCESSOR_FILE)


def _sampled_qwen2(c: dict, total: int, fps: float) -> np.ndarray:
    """Qwen2VLVideoProcessor.sample_frames: every frame unless do_sample_frames; then num_frames, or `fps` a second
    (at least min_frames), rounded down to temporal patches, at even steps from frame 0."""
    if not c["do_sample_frames"]:
        return np.arange(total)
    tp, n = c["temporal_patch_size"], c.get("num_frames")
    if n is not None:
        n = round(n / tp) * tp
    elif c.get("fps") is not None:
        most = math.floor(min(c["max_frames"], total) / tp) * tp
        n = math.floor(min(max(total / fps * c["fps"], c["min_frames"]), most, total) / tp) * tp
    else:
        return np.arange(total)
    if not 0 < n <= total:
        raise LlmarchError(f"a video of {total} frames cannot be sampled to {n} frames (temporal patches of {tp})")
    return torch.arange(0, total, total / n).int().numpy()


def _sampled_qwen3(c: dict, total: int, fps: float) -> np.ndarray:
    """Qwen3VLVideoProcessor.sample_frames: num_frames, or `fps` a second (at least min_frames, at most the video's),
    evenly from the first frame to the last."""
    if not c["do_sample_frames"]:
        return np.arange(total)
    n = c.get("num_frames")
    if n is None:
        n = min(max(int(total / fps * c["fps"]), c["min_frames"]), c["max_frames"], total)
    return np.linspace(0, total - 1, n).round().astype(int)


def _size_qwen3(frames: int, height: int, width: int, factor: int, tp: int, lo: int, hi: int) -> tuple[int, int]:
    """Qwen3-VL's video smart_resize: the frames' total area within [lo, hi]."""
    if frames < tp:
        raise LlmarchError(f"a Qwen3-VL video needs at least temporal_patch_size = {tp} frames, got {frames}")
    if height < factor or width < factor:
        scale = max(factor / height, factor / width)
        height, width = int(height * scale), int(width * scale)
    if max(height, width) / min(height, width) > 200:
        raise LlmarchError(f"a video's aspect ratio must be at most 200, got {height} x {width}")
    h, w, t = round(height / factor) * factor, round(width / factor) * factor, round(frames / tp) * tp
    if t * h * w > hi:
        beta = math.sqrt(frames * height * width / hi)
        return max(factor, math.floor(height / beta / factor) * factor), \
            max(factor, math.floor(width / beta / factor) * factor)
    if t * h * w < lo:
        beta = math.sqrt(lo / (frames * height * width))
        return math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h, w


class QwenVideos:
    """A video processor: `defaults` its class attributes (transformers' names), `sample` its sample_frames,
    `frames_resized` whether smart_resize counts the frames (Qwen3-VL's)."""

    def __init__(self, config: dict, defaults: dict, sample, frames_resized: bool):
        self.c = {**defaults, **config}
        self.s = settings(config, defaults)
        self.sample, self.frames_resized = sample, frames_resized

    def __call__(self, videos: list) -> tuple[dict, list[list[float]]]:
        """video_files.Video's -> ({"pixel_values_videos", "video_grid_thw", "second_per_grid_ts"}, each video's
        temporal patches' timestamps in seconds)."""
        s, tp = self.s, self.s["frames"]
        factor, arguments, stamps = s["patch"] * s["merge"], {"pixel_values_videos": [], "video_grid_thw": []}, []
        seconds = []
        for video in videos:
            index = self.sample(self.c, len(video.frames), video.fps)
            frames = pick(video.frames, index)
            size = None
            if s["resize"]:
                h, w = frames[0].height, frames[0].width
                size = _size_qwen3(len(frames), h, w, factor, tp, s["min_pixels"], s["max_pixels"]) \
                    if self.frames_resized else smart_resize(h, w, factor, s["min_pixels"], s["max_pixels"])
            x = np.stack([frame_array(frame, s, size) for frame in frames])  # (T, C, H, W)
            x = np.concatenate([x, np.repeat(x[-1:], -len(x) % tp, axis=0)])
            arguments["pixel_values_videos"].append(patchify(x, s["patch"], s["merge"], tp))
            arguments["video_grid_thw"].append([len(x) // tp, x.shape[2] // s["patch"], x.shape[3] // s["patch"]])
            padded = [int(i) / video.fps for i in index] + [int(index[-1]) / video.fps] * (-len(index) % tp)
            stamps.append([(padded[i] + padded[i + tp - 1]) / 2 for i in range(0, len(padded), tp)])
            seconds.append(tp / (len(index) / len(video.frames) * video.fps))  # VideoMetadata.sampled_fps
        if not videos:
            raise LlmarchError("a video processor needs at least one video")
        return {"pixel_values_videos": torch.from_numpy(np.concatenate(arguments["pixel_values_videos"])),
                "video_grid_thw": torch.tensor(arguments["video_grid_thw"], dtype=torch.int64),
                "second_per_grid_ts": torch.tensor(seconds)}, stamps


_QWEN2 = dict(size={"shortest_edge": 128 * 28 * 28, "longest_edge": 28 * 28 * 768}, do_sample_frames=False,
              temporal_patch_size=2, min_frames=4, max_frames=768)
VIDEO_PROCESSORS.register("Qwen2VLVideoProcessor")(lambda config: QwenVideos(config, _QWEN2, _sampled_qwen2, False))
_QWEN3 = dict(size={"shortest_edge": 128 * 32 * 32, "longest_edge": 32 * 32 * 768}, patch_size=16,
              image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5), do_sample_frames=True, fps=2,
              temporal_patch_size=2, min_frames=4, max_frames=768)
VIDEO_PROCESSORS.register("Qwen3VLVideoProcessor")(lambda config: QwenVideos(config, _QWEN3, _sampled_qwen3, True))


def video_processor_for(config: dict, model_type: str) -> QwenVideos:
    """The video processor config's video_processor_type names (its torchvision class's name read as the same), or
    the model type's where it names none (a preprocessor_config.json of the image processor's)."""
    kind = str(config.get("video_processor_type") or BY_MODEL_TYPE.get(model_type, "")).removesuffix("Fast")
    if kind not in VIDEO_PROCESSORS:
        raise LlmarchError(f"video processor {kind or '(none for ' + model_type + ')'!r} is not supported; supported: "
                           f"{', '.join(VIDEO_PROCESSORS.names())}")
    return VIDEO_PROCESSORS[kind](config)


def video_text(v, tok, prompt: str, grids: list, stamps: list, frames_apart: bool) -> str:
    """The prompt with each video's tokens in place of its <|video_pad|> (at the start, in the chat templates'
    wrapper, where it has none)."""
    pad = tok.token_text(v.video_token_id) if v.video_token_id < tok.vocab_size else ""
    if not pad:
        raise LlmarchError(f"the tokenizer has no text for the video token (id {v.video_token_id})")
    wrapped = VISION_START + pad + VISION_END
    if not count(prompt, pad, len(grids), "video"):
        prompt = wrapped * len(grids) + prompt
    if frames_apart:  # Qwen3VLProcessor: each frame wraps itself, so the template's wrapper goes
        prompt = prompt.replace(wrapped, pad)
    m2, pieces = v.merge_size ** 2, prompt.split(pad)
    out = pieces[0]
    for (t, h, w), times, piece in zip(grids, stamps, pieces[1:]):
        frame = h * w // m2
        out += "".join(f"<{s:.1f} seconds>{VISION_START}{pad * frame}{VISION_END}" for s in times) \
            if frames_apart else pad * (t * frame)
        out += piece
    return out


def video_request(model, tok, prompt: str, images: list, videos: list) -> tuple[list[int], dict]:
    """(ids, the model's image and video arguments) for one prompt about `videos` (video_files.Video's) and
    `images` (PIL images, maybe none), with the checkpoint's video processor and its processor's layout; the images
    go as prompts.image_request places them (at the start, before the videos, where the prompt has no image token)."""
    cfg = model.config
    if not is_qwen(cfg.vision) or qwen_vision_config(cfg.vision).video_token_id is None:
        raise LlmarchError(f"{cfg.name} reads no videos (videos are for Qwen2-VL, Qwen2.5-VL and Qwen3-VL "
                           "checkpoints: config vision video_token_id)")
    v = qwen_vision_config(cfg.vision)
    side = getattr(tok, "side_files", {})
    arguments, stamps = video_processor_for(video_processor_config(side), cfg.hf_model_type)(videos)
    if v.tokens_per_second is None:  # only Qwen2.5-VL's processor gives it (its positions are timed)
        arguments.pop("second_per_grid_ts")
    text = video_text(v, tok, prompt, arguments["video_grid_thw"].tolist(), stamps, v.frames_apart)
    if not images:
        return tok.encode(text), arguments
    ids, image_arguments = image_request(model, tok, text, images)
    return ids, {**image_arguments, **arguments}


def chat_video_request(model, tok, text: str, images: list, videos: list) -> tuple[list[int], dict]:
    """video_request for a conversation its chat template rendered to `text`, which holds one <|video_pad|> per video
    (Qwen-VL's templates write <|vision_start|><|video_pad|><|vision_end|> for each {"type": "video"} part), as
    transformers' processor reads the rendered text."""
    v = qwen_vision_config(model.config.vision) if is_qwen(model.config.vision) else None
    if v is not None and v.video_token_id is not None and v.video_token_id < tok.vocab_size:
        pad = tok.token_text(v.video_token_id)
        if text.count(pad) != len(videos):
            raise LlmarchError(f"the chat template wrote {text.count(pad)} {pad} token(s) for {len(videos)} video(s): "
                               "it does not place videos")
    return video_request(model, tok, text, images, videos)
