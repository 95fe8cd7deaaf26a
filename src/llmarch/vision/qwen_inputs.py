"""Images into a Qwen2-VL, Qwen2.5-VL or Qwen3-VL text model: the tower's merged features written at the <|image_pad|>
positions (image n fills the n-th run of its t (h / m) (w / m) image tokens, counting row by row, as transformers'
masked_scatter does), and the M-RoPE positions (Wang et al. 2024, "Qwen2-VL", \u00a72.1) of text and image tokens
that transformers' get_rope_index computes: text tokens count on, all three axes equal; an image's token at merged
(frame, row, column) (f, r, c) takes (s + f, s + r, s + c) from the position s where it starts, and the text after it
continues from s + max(h, w) / m, its largest position + 1. A later token (cached decoding) then sits at its row
position (its count of real tokens before it) plus the prompt's delta: the largest position + 1 less the prompt's
real-token count. Qwen3-VL's DeepStack features go to the same positions of the hidden states after the text
model's first blocks (Stack.run's deepstack)."""
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

    def _check(self, pixel_values: torch.Tensor, grid: torch.Tensor | None) -> None:
        v, m = self.v, self.v.merge_size
        if grid is None or grid.dim() != 2 or grid.shape[1] != 3 or grid.dtype not in (torch.int32, torch.int64):
            raise LlmarchError("Qwen-VL images need image_grid_thw, (images, 3) integer (frames, rows, columns) of "
                               "patches per image")
        if bool((grid[:, 1:] % m).any()) or bool((grid <= 0).any()):
            raise LlmarchError(f"image_grid_thw {grid.tolist()}: rows and columns must be positive multiples of "
                               f"merge_size {m}")
        if pixel_values.dim() != 2 or tuple(pixel_values.shape) != (int(grid.prod(-1).sum()), v.patch_dim):
            raise LlmarchError(f"pixel_values must be (patches, {v.patch_dim}) for image_grid_thw {grid.tolist()}, "
                               f"got {tuple(pixel_values.shape)}")

    def forward(self, embeds: torch.Tensor, ids: torch.Tensor, pixel_values: torch.Tensor,
                pixel_mask: torch.Tensor | None = None, image_sizes=None) -> torch.Tensor:
        """TransformerLM.embed_inputs' hook, for fixed-size images: these need their grid (prompt)."""
        raise LlmarchError("Qwen-VL's images need image_grid_thw beside pixel_values (vision/qwen_pixels.py gives "
                           "both)")

    def prompt(self, embeds: torch.Tensor, ids: torch.Tensor, attention_mask: torch.Tensor | None,
               pixel_values: torch.Tensor, image_grid_thw: torch.Tensor | None) -> ImagePrompt:
        """embeds (B, T, C) of a prompt's ids (B, T) from slot 0, attention_mask (B, T) its real tokens (None: all);
        pixel_values (P, patch_dim) of the images image_grid_thw (N, 3) gives -> the ImagePrompt: the images' merged
        features at the image-token positions, the prompt's positions."""
        self._check(pixel_values, image_grid_thw)
        where = ids == self.v.image_token_id  # (B, T)
        need, count = int(pixel_values.shape[0]) // self.v.merge_size ** 2, int(where.sum())
        if count != need:
            raise LlmarchError(f"{image_grid_thw.shape[0]} image(s) of {need} merged features need {need} image "
                               f"tokens (id {self.v.image_token_id}) in input_ids, which hold {count}")
        features, deep = self.tower(pixel_values, image_grid_thw)  # (need, C), each of deep too
        zeros = torch.zeros_like(embeds)
        deepstack = [zeros.masked_scatter(where[..., None], d.to(embeds.dtype)) for d in deep] or None
        pos, delta = self.rope_index(ids, attention_mask, image_grid_thw)
        return ImagePrompt(embeds.masked_scatter(where[..., None], features.to(embeds.dtype)), pos, delta, deepstack)

    def rope_index(self, ids: torch.Tensor, attention_mask: torch.Tensor | None,
                   image_grid_thw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids (B, T) of a prompt from slot 0, attention_mask (B, T) its real tokens (None: all) -> the M-RoPE
        positions (3, B, T) (padding at 0, as transformers leaves it) and each row's delta (B,)."""
        m, image = self.v.merge_size, self.v.image_token_id
        B, T = ids.shape
        pos = torch.zeros(3, B, T, dtype=torch.long, device=ids.device)
        real = torch.ones_like(ids, dtype=torch.bool) if attention_mask is None else attention_mask[:, :T].bool()
        grids, deltas = iter(image_grid_thw.tolist()), []
        for b in range(B):
            row, parts, at, start = ids[b][real[b]].tolist(), [], 0, 0
            while at < len(row):
                if row[at] != image:
                    run = next((k for k in range(at, len(row)) if row[k] == image), len(row)) - at
                    parts.append(torch.arange(start, start + run).expand(3, -1))
                    start, at = start + run, at + run
                    continue
                t, h, w = next(grids, (0, 0, 0))
                h, w = h // m, w // m
                if t == 0 or row[at:at + t * h * w] != [image] * (t * h * w):
                    raise LlmarchError("the image tokens in input_ids do not match image_grid_thw (each image needs "
                                       "t * (h / merge_size) * (w / merge_size) of them in a run)")
                f, r, c = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
                parts.append(torch.stack([f.flatten(), r.flatten(), c.flatten()]) + start)
                start, at = start + max(h, w), at + t * h * w
            row_pos = torch.cat(parts, dim=1) if parts else torch.zeros(3, 0, dtype=torch.long)
            pos[:, b, real[b]] = row_pos.to(ids.device)
            deltas.append(int(row_pos.max()) + 1 - len(row) if len(row) else 0)
        return pos, torch.tensor(deltas, device=ids.device)
