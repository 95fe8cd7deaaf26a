"""Images and videos into a Qwen2-VL, Qwen2.5-VL or Qwen3-VL text model: the tower's merged features written at the
<|image_pad|> and <|video_pad|> positions (image n fills the n-th run of its t (h / m) (w / m) image tokens, counting
row by row, as transformers' masked_scatter does; videos alike), and the M-RoPE positions (Wang et al. 2024,
"Qwen2-VL", \u00a72.1) of text, image and video tokens that transformers' get_rope_index computes: text tokens count
on, all three axes equal; an image's token at merged (frame, row, column) (f, r, c) takes (s + f, s + r, s + c) from
the position s where it starts, and the text after it continues from s + max(h, w) / m (an image's largest position
+ 1). A video's frames step by 1, or by Qwen2.5-VL's tokens_per_second x second_per_grid_ts (floored); Qwen3-VL's
frames are one-frame videos each. A later token (cached decoding) then sits at its row position (its count of real
tokens before it) plus the prompt's delta: the last position + 1 less the prompt's real-token count. Qwen3-VL's
DeepStack features go to the same positions of the hidden states after the text model's first blocks (Stack.run's
deepstack)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import LlmarchError
from .qwen_config import qwen_vision_config
from .qwen_tower import QwenVisionTower


@dataclass
class ImagePrompt:
    """What a prompt with images gives Stack.run: its embeddings (B, T, C), M-RoPE positions (3, B, T), the later
    tokens' shift (B,), and the DeepStack features, each (B, T, C) zero off the image tokens (None: none)."""
    embeds: torch.Tensor
    rope_pos: torch.Tensor
    rope_delta: torch.Tensor
    deepstack: list | None

    def rows(self, repeat: int) -> "ImagePrompt":
        """Each row repeated `repeat` times in place (beam search's beams)."""
        if repeat == 1:
            return self
        r = lambda t: t.repeat_interleave(repeat, dim=0)  # noqa: E731
        return ImagePrompt(r(self.embeds), self.rope_pos.repeat_interleave(repeat, dim=1), r(self.rope_delta),
                           None if self.deepstack is None else [r(d) for d in self.deepstack])


class QwenImageInputs(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.v = qwen_vision_config(cfg.vision)  # its out_width checked against d_model: config.check_vision
        self.tower = QwenVisionTower(self.v)

    def held_modules(self) -> list[nn.Module]:
        return []

    def text_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return ids  # <|image_pad|> is in the vocabulary; its rows are overwritten

    def _check(self, pixel_values: torch.Tensor | None, grid: torch.Tensor | None, kind: str = "image") -> None:
        v, m = self.v, self.v.merge_size
        pixels, name = ("pixel_values", "image_grid_thw") if kind == "image" else ("pixel_values_videos",
                                                                                  "video_grid_thw")
        if pixel_values is None:
            raise LlmarchError(f"{name} describes {pixels} for a Qwen-VL vision tower: needs {pixels} beside it")
        if grid is None or grid.dim() != 2 or grid.shape[1] != 3 or grid.dtype not in (torch.int32, torch.int64):
            raise LlmarchError(f"Qwen-VL {kind}s need {name}, ({kind}s, 3) integer (frames, rows, columns) of "
                               f"patches per {kind}")
        if bool((grid[:, 1:] % m).any()) or bool((grid <= 0).any()):
            raise LlmarchError(f"{name} {grid.tolist()}: rows and columns must be positive multiples of "
                               f"merge_size {m}")
        if pixel_values.dim() != 2 or tuple(pixel_values.shape) != (int(grid.prod(-1).sum()), v.patch_dim):
            raise LlmarchError(f"{pixels} must be (patches, {v.patch_dim}) for {name} {grid.tolist()}, "
                               f"got {tuple(pixel_values.shape)}")

    def forward(self, embeds: torch.Tensor, ids: torch.Tensor, pixel_values: torch.Tensor,
                pixel_mask: torch.Tensor | None = None, image_sizes=None) -> torch.Tensor:
        """TransformerLM.embed_inputs' hook, for fixed-size images: these need their grid (prompt)."""
        raise LlmarchError("Qwen-VL's images need image_grid_thw beside pixel_values (vision/qwen_pixels.py gives "
                           "both)")

    def _features(self, ids: torch.Tensor, pixel_values, grid, kind: str):
        """The tower's merged features of one kind's pixels (P, patch_dim) and grid (N, 3) -> (where (B, T) its
        tokens are, features (G, C), DeepStack features [(G, C)]); None where there are none of that kind."""
        if grid is None and pixel_values is None:
            return None
        self._check(pixel_values, grid, kind)
        token = self.v.image_token_id if kind == "image" else self.v.video_token_id
        if token is None:
            raise LlmarchError("this Qwen-VL config has no video_token_id: it reads no videos")
        where = ids == token  # (B, T)
        need, count = int(pixel_values.shape[0]) // self.v.merge_size ** 2, int(where.sum())
        if count != need:
            raise LlmarchError(f"{grid.shape[0]} {kind}(s) of {need} merged features need {need} {kind} tokens (id "
                               f"{token}) in input_ids, which hold {count}")
        return (where, *self.tower(pixel_values, grid))

    def prompt(self, embeds: torch.Tensor, ids: torch.Tensor, attention_mask: torch.Tensor | None,
               pixel_values: torch.Tensor | None, image_grid_thw: torch.Tensor | None,
               pixel_values_videos: torch.Tensor | None = None, video_grid_thw: torch.Tensor | None = None,
               second_per_grid_ts: torch.Tensor | None = None) -> ImagePrompt:
        """embeds (B, T, C) of a prompt's ids (B, T) from slot 0, attention_mask (B, T) its real tokens (None: all);
        pixel_values (P, patch_dim) of the images image_grid_thw (N, 3) gives, pixel_values_videos (P', patch_dim)
        of the videos video_grid_thw (N', 3) gives (second_per_grid_ts (N',): Qwen2.5-VL's seconds per temporal
        patch) -> the ImagePrompt: the merged features at the image and video tokens, the prompt's positions."""
        parts = [p for p in (self._features(ids, pixel_values, image_grid_thw, "image"),
                             self._features(ids, pixel_values_videos, video_grid_thw, "video")) if p is not None]
        zeros, deepstack = torch.zeros_like(embeds), None
        for where, features, deep in parts:  # images and videos take disjoint positions: their DeepStack adds up
            embeds = embeds.masked_scatter(where[..., None], features.to(embeds.dtype))
            deep = [zeros.masked_scatter(where[..., None], d.to(embeds.dtype)) for d in deep]
            deepstack = deep if deepstack is None else [a + b for a, b in zip(deepstack, deep)]
        pos, delta = self.rope_index(ids, attention_mask, image_grid_thw, video_grid_thw, second_per_grid_ts)
        return ImagePrompt(embeds, pos, delta, deepstack or None)

    def _media(self, image_grid_thw, video_grid_thw, second_per_grid_ts) -> dict:
        """{token id: iterator of (t, h, w, temporal step)} of the images and the videos, in order (transformers'
        get_rope_index: one iterator over all rows). Qwen2.5-VL's video steps tokens_per_second x seconds per
        temporal patch (1 where second_per_grid_ts is not given, as transformers' default); Qwen3-VL's video is
        its frames one by one."""
        v, media = self.v, {}
        if image_grid_thw is not None:
            media[v.image_token_id] = iter([(*g, 1) for g in image_grid_thw.tolist()])
        if video_grid_thw is not None:
            if v.video_token_id is None:
                raise LlmarchError("this Qwen-VL config has no video_token_id: it reads no videos")
            grids = video_grid_thw.tolist()
            if second_per_grid_ts is not None and len(second_per_grid_ts) != len(grids):
                raise LlmarchError(f"second_per_grid_ts holds {len(second_per_grid_ts)} value(s) for {len(grids)} "
                                   "video(s)")
            seconds = [1] * len(grids) if second_per_grid_ts is None else list(torch.as_tensor(second_per_grid_ts))
            steps = [1 if v.tokens_per_second is None else v.tokens_per_second * s for s in seconds]
            if v.frames_apart:
                grids, steps = [(1, h, w) for t, h, w in grids for _ in range(t)], [1] * sum(g[0] for g in grids)
            media[v.video_token_id] = iter([(*g, step) for g, step in zip(grids, steps)])
        elif second_per_grid_ts is not None:  # it times videos only: refused rather than dropped unread
            raise LlmarchError("second_per_grid_ts times videos (video_grid_thw): given without them")
        return media

    def rope_index(self, ids: torch.Tensor, attention_mask: torch.Tensor | None,
                   image_grid_thw: torch.Tensor | None, video_grid_thw: torch.Tensor | None = None,
                   second_per_grid_ts: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """ids (B, T) of a prompt from slot 0, attention_mask (B, T) its real tokens (None: all) -> the M-RoPE
        positions (3, B, T) (padding at 0, as transformers leaves it) and each row's delta (B,). A video's merged
        token (f, r, c) takes (s + floor(f x step), s + r, s + c), step 1 but for Qwen2.5-VL's timed videos."""
        m = self.v.merge_size
        B, T = ids.shape
        pos = torch.zeros(3, B, T, dtype=torch.long, device=ids.device)
        real = torch.ones_like(ids, dtype=torch.bool) if attention_mask is None else attention_mask[:, :T].bool()
        media, deltas = self._media(image_grid_thw, video_grid_thw, second_per_grid_ts), []
        for b in range(B):
            row, parts, at, start = ids[b][real[b]].tolist(), [], 0, 0
            while at < len(row):
                token = row[at]
                if token not in media:
                    run = next((k for k in range(at, len(row)) if row[k] in media), len(row)) - at
                    parts.append(torch.arange(start, start + run).expand(3, -1))
                    start, at = start + run, at + run
                    continue
                t, h, w, step = next(media[token], (0, 0, 0, 1))
                h, w = h // m, w // m
                if t == 0 or row[at:at + t * h * w] != [token] * (t * h * w):
                    raise LlmarchError("the image or video tokens in input_ids do not match image_grid_thw or "
                                       "video_grid_thw (each needs t * (h / merge_size) * (w / merge_size) of them in "
                                       "a run)")
                frames = (torch.arange(t) * step).long()  # transformers' get_vision_position_ids: floored
                f, r, c = torch.meshgrid(frames, torch.arange(h), torch.arange(w), indexing="ij")
                parts.append(torch.stack([f.flatten(), r.flatten(), c.flatten()]) + start)
                start, at = start + max(h, w), at + t * h * w
            row_pos = torch.cat(parts, dim=1) if parts else torch.zeros(3, 0, dtype=torch.long)
            pos[:, b, real[b]] = row_pos.to(ids.device)
            # the next token turns on from the last one's position, as transformers' generate continues position_ids
            # (after an image that is the largest position; after a video whose frames step past the text's, it is
            # not, and transformers' model-level rope_deltas, from the largest, would jump over the gap)
            deltas.append(int(row_pos[:, -1].max()) + 1 - len(row) if len(row) else 0)
        return pos, torch.tensor(deltas, device=ids.device)
