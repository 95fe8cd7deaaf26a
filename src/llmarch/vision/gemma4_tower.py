"""Gemma 4's vision tower and embedder (vision/gemma4_config.py; transformers' Gemma4VisionModel and
Gemma4MultimodalEmbedder), and their features written at the image tokens of the text.
pixel_values come patchified as Gemma4ImageProcessor gives them, (N, P, 3 p^2) in [0, 1], each image's h x w patches
first in row-major order and zeros after; image_sizes (N, 2) give each image's (height, width) in pixels, from which
the patches' (column, row) positions follow (transformers' image_position_ids, -1 on padding).
  x = W_in (2 pixels - 1) + E_col[column] + E_row[row]             the learned 2-D position table, 0 on padding
  blocks: x += post_norm(attn(norm(x))); x += post_norm(GeGLU(norm(x)))   (Gemma 4's sandwich, RMSNorm x / rms * g)
  attn: q, k RMS-normed per head (with gains), v without; the first half of each head's dims turns by the column,
        the second half by the row (axial 2-D RoPE, each half in the half-split layout, theta 100); scores unscaled;
        padded patches masked as keys
  each image's grid average-pooled by k x k (k = pooling), times sqrt(width), (x - std_bias) * std_scale where
  standardized, then RMSNorm without gain and one linear map into the text width (the embedder).
Shapes: N images, P patches, C width, H heads, D head_dim."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LlmarchError
from ..layers.clipped_linear import ClippedLinear
from ..layers.ffn import ACTIVATIONS
from ..layers.linear import Linear
from ..layers.norms import RMSNorm, rms_normalize
from ..layers.positions import apply_rotary
from .gemma4_config import gemma4_vision_config
from .inputs import ImageInputs


class Gemma4VisionAttention(nn.Module):
    def __init__(self, v):
        super().__init__()
        self.v = v
        q, kv = v.n_heads * v.head_dim, v.n_kv_heads * v.head_dim
        self.q_proj, self.k_proj = ClippedLinear(v.width, q, v.clipped), ClippedLinear(v.width, kv, v.clipped)
        self.v_proj, self.o_proj = ClippedLinear(v.width, kv, v.clipped), ClippedLinear(q, v.width, v.clipped)
        self.q_norm, self.k_norm = RMSNorm(v.head_dim, v.norm_eps), RMSNorm(v.head_dim, v.norm_eps)

    def forward(self, x: torch.Tensor, rope: tuple, mask: torch.Tensor) -> torch.Tensor:
        """x (N, P, C), rope: (cos, sin) of columns and of rows, each (N, P, D/2); mask bool (N, 1, 1, P)."""
        v, (N, P, _) = self.v, x.shape
        q = self.q_norm(self.q_proj(x).view(N, P, -1, v.head_dim)).transpose(1, 2)  # (N, H, P, D)
        k = self.k_norm(self.k_proj(x).view(N, P, -1, v.head_dim)).transpose(1, 2)
        val = rms_normalize(self.v_proj(x).view(N, P, -1, v.head_dim), v.norm_eps).transpose(1, 2)
        q, k = rotate_2d(q, *rope), rotate_2d(k, *rope)
        if v.n_kv_heads != v.n_heads:
            k, val = (t.repeat_interleave(v.n_heads // v.n_kv_heads, dim=1) for t in (k, val))
        out = F.scaled_dot_product_attention(q, k, val, attn_mask=mask, scale=1.0)  # Gemma 4: QK-norm bounds them
        return self.o_proj(out.transpose(1, 2).reshape(N, P, -1))


def rotate_2d(x: torch.Tensor, columns: tuple, rows: tuple) -> torch.Tensor:
    """x (N, H, P, D): its first D/2 dims rotated by columns' (cos, sin), the other D/2 by rows' (transformers'
    apply_multidimensional_rope: each half in the half-split layout)."""
    half = x.shape[-1] // 2
    return torch.cat((apply_rotary(x[..., :half], *columns), apply_rotary(x[..., half:], *rows)), dim=-1)


class Gemma4VisionBlock(nn.Module):
    def __init__(self, v):
        super().__init__()
        self.attn = Gemma4VisionAttention(v)
        self.gate = ClippedLinear(v.width, v.ffn_hidden, v.clipped)
        self.up = ClippedLinear(v.width, v.ffn_hidden, v.clipped)
        self.down = ClippedLinear(v.ffn_hidden, v.width, v.clipped)
        self.act = ACTIVATIONS[v.act]
        self.ln1, self.post_ln1, self.ln2, self.post_ln2 = (RMSNorm(v.width, v.norm_eps) for _ in range(4))

    def forward(self, x: torch.Tensor, rope: tuple, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.post_ln1(self.attn(self.ln1(x), rope, mask))
        h = self.ln2(x)
        return x + self.post_ln2(self.down(self.act(self.gate(h)) * self.up(h)))


class Gemma4VisionTower(nn.Module):
    def __init__(self, v):
        super().__init__()
        self.v = v
        self.patch = Linear(v.patch_dim, v.width, bias=False)
        self.positions = nn.Parameter(torch.ones(2, v.positions, v.width))  # (columns | rows, index, C)
        self.blocks = nn.ModuleList(Gemma4VisionBlock(v) for _ in range(v.n_layers))
        if v.standardize:
            self.register_buffer("std_bias", torch.zeros(v.width))
            self.register_buffer("std_scale", torch.ones(v.width))

    def rotary(self, xy: torch.Tensor) -> tuple:
        """xy (N, P, 2) columns and rows -> ((cos, sin) of columns, (cos, sin) of rows), each (N, P, D/2): the D/4
        frequencies theta^(-4j / D), repeated for the half-split pairs."""
        d = self.v.head_dim // 2
        inv_freq = 1.0 / self.v.rope_theta ** (torch.arange(0, d, 2, device=xy.device).float() / d)  # (D/4,)
        out = []
        for axis in (0, 1):
            angles = xy[..., axis, None].float() * inv_freq
            angles = torch.cat((angles, angles), dim=-1)
            out.append((angles.cos(), angles.sin()))
        return tuple(out)

    def forward(self, pixel_values: torch.Tensor, grids: list[tuple[int, int]]) -> list[torch.Tensor]:
        """pixel_values (N, P, 3 p^2), grids each image's (rows, columns) of patches -> each image's pooled
        features (h w / k^2, C) in float32, standardized where the tower is."""
        v, (N, P, _) = self.v, pixel_values.shape
        real = torch.zeros(N, P, dtype=torch.bool, device=pixel_values.device)
        xy = torch.zeros(N, P, 2, dtype=torch.long, device=pixel_values.device)
        for i, (h, w) in enumerate(grids):
            real[i, :h * w] = True
            xy[i, :h * w] = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(h), indexing="xy"), -1).reshape(
                h * w, 2)
        if max(max(h, w) for h, w in grids) > v.positions:
            raise LlmarchError(f"images of {grids} patches pass the {v.positions} positions of the tower's table")
        x = self.patch((2 * (pixel_values - 0.5)).to(self.patch.weight.dtype))
        x = x + torch.where(real[..., None], self.positions[0][xy[..., 0]] + self.positions[1][xy[..., 1]], 0.0)
        rope, mask = self.rotary(xy), real[:, None, None, :]
        for block in self.blocks:
            x = block(x, rope, mask)
        k, out = v.pooling, []
        for i, (h, w) in enumerate(grids):  # each image's grid pooled k x k, row-major (transformers' one-hot pooling)
            grid = x[i, :h * w].float().T.reshape(1, -1, h, w)
            pooled = F.avg_pool2d(grid, k)[0].flatten(1).T * v.width ** 0.5  # (h w / k^2, C)
            if v.standardize:
                pooled = (pooled - self.std_bias.float()) * self.std_scale.float()
            out.append(pooled)
        return out


class Gemma4ImageInputs(nn.Module):
    scatter = ImageInputs.scatter  # the features at the image-token positions, unscaled as ImageInputs writes them

    def __init__(self, cfg):
        super().__init__()
        self.v = gemma4_vision_config(cfg.vision)  # its out_width checked against d_model: config.check_vision
        self.tower = Gemma4VisionTower(self.v)
        self.projector = Linear(self.v.width, self.v.out_width, bias=False)  # embed_vision.embedding_projection
        self.embed_scale = cfg.d_model ** 0.5 if cfg.embed_scale else None

    def held_modules(self) -> list[nn.Module]:
        return []

    def text_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return ids.masked_fill(ids == self.v.image_token_id, 0)  # Gemma4Model embeds them as padding (id 0)

    def features(self, pixel_values: torch.Tensor, image_sizes) -> torch.Tensor:
        """(F, out_width): every image's features in the text width, image after image."""
        v = self.v
        if pixel_values.dim() != 3 or pixel_values.shape[-1] != v.patch_dim or image_sizes is None:
            raise LlmarchError(f"Gemma 4's tower reads patchified pixel_values (images, patches, {v.patch_dim}) and "
                               f"image_sizes (images, 2); got {tuple(pixel_values.shape)}"
                               f"{'' if image_sizes is not None else ' without image_sizes'}")
        grids = v.grids(image_sizes, pixel_values.shape[0])
        if any(h * w > pixel_values.shape[1] for h, w in grids):
            raise LlmarchError(f"image_sizes give {grids} patches, more than pixel_values' {pixel_values.shape[1]}")
        pooled = torch.cat(self.tower(pixel_values, grids))
        return self.projector(rms_normalize(pooled, v.norm_eps).to(self.projector.weight.dtype))

    def forward(self, embeds: torch.Tensor, ids: torch.Tensor, pixel_values: torch.Tensor,
                pixel_mask: torch.Tensor | None = None, image_sizes=None) -> torch.Tensor:
        """embeds (B, T, C) of ids (B, T); pixel_values (N, P, 3 p^2), image_sizes (N, 2) -> embeds with each image's
        h w / (p k)^2 features at the image-token positions, in order."""
        if pixel_mask is not None:
            raise LlmarchError("a pixel mask is for a tower with position_buckets (Idefics3's); Gemma 4 reads "
                               "image_sizes")
        return self.scatter(embeds, ids, self.features(pixel_values, image_sizes)[None])
