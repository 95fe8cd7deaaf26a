"""Pixtral's vision tower and Mistral 3's projector (Mistral AI 2024, "Pixtral 12B", \u00a72.1), and their features
written at the [IMG] positions of the text. Each image (pixel_values (N, C, H, W), padded to the largest; image_sizes
its real (height, width)) is cut into patch_size patches by a convolution of that stride, the patches of all images
packed into one sequence, RMS-normed (ln_pre), and run through llmarch's pre-norm Blocks (RMSNorm, gated MLP, no
biases) with bidirectional attention within each image (block-diagonal, qwen_tower.segment_mask) and 2-D RoPE: the
first quarter of each head's pairs turns by the patch's row at the even-indexed frequencies
theta^(-4j / D), the second quarter by its column at the odd-indexed ones theta^(-(4j + 2) / D), the other half
repeating them (transformers' half-split layout). The projector RMS-norms the last block's output, concatenates each
merge_size x merge_size group of patches channel by channel (torch's unfold order) into one feature, maps it by a
linear merging layer and then linear, act, linear into the text model's width. The [IMG_BREAK] and [IMG_END] tokens
of the prompt are ordinary tokens.
Shapes: (P, C) over all images' patches P, packed, row by row within each image."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..errors import LlmarchError
from ..layers.attention import AttentionContext
from ..layers.block import Block
from ..layers.ffn import ACTIVATIONS
from ..layers.linear import Linear
from ..layers.norms import RMSNorm
from .anyres import image_sizes_list
from .pixtral_config import pixtral_vision_config
from .qwen_tower import segment_mask

NORM_EPS = 1e-5  # transformers hard-codes the tower's RMSNorms' eps


def block_config(v) -> ModelConfig:
    """The tower's blocks as llmarch blocks: RMSNorm pre-norm, a gated MLP, no biases, bidirectional, rotary
    positions given by the tower."""
    return ModelConfig(name="pixtral_vision", vocab_size=1, d_model=v.width, n_layers=v.n_layers, n_heads=v.n_heads,
                       ffn=v.ffn, ffn_hidden=v.ffn_hidden, norm="rmsnorm", norm_eps=NORM_EPS, bias=False,
                       causal=False, positions="none", context_length=2 ** 20)


class PixtralTower(nn.Module):
    def __init__(self, v):
        super().__init__()
        self.v = v
        cfg = block_config(v)
        self.patch = nn.Conv2d(v.channels, v.width, v.patch_size, stride=v.patch_size, bias=False)
        self.ln_pre = RMSNorm(v.width, NORM_EPS)
        self.blocks = nn.ModuleList(Block(cfg.for_layer(i), layer=i) for i in range(v.n_layers))

    def rotary(self, rc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, 2) rows and columns -> cos, sin (1, P, D): angles [row theta_2j', col theta_2j'+1] for the halves."""
        D = self.v.head_dim
        inv_freq = 1.0 / self.v.rope_theta ** (torch.arange(0, D, 2, device=rc.device).float() / D)  # (D/2,)
        angles = torch.cat((rc[:, :1].float() * inv_freq[0::2], rc[:, 1:].float() * inv_freq[1::2]), dim=-1)
        angles = torch.cat((angles, angles), dim=-1)[None]
        return angles.cos(), angles.sin()

    def forward(self, pixel_values: torch.Tensor, grids: list[tuple[int, int]]) -> torch.Tensor:
        """pixel_values (N, C, H, W), grids each image's (rows, columns) of real patches -> (P, width), the last
        block's output over every image's patches, row by row."""
        x = self.patch(pixel_values.to(self.patch.weight.dtype))  # (N, width, H / p, W / p)
        x = torch.cat([img[:, :h, :w].flatten(1).T for img, (h, w) in zip(x, grids)])  # (P, width)
        rc = torch.cat([torch.cartesian_prod(torch.arange(h), torch.arange(w)) for h, w in grids]).to(x.device)
        cos, sin = self.rotary(rc)
        mask = segment_mask([h * w for h, w in grids], x.device)
        x = self.ln_pre(x)[None]  # (1, P, width): one packed sequence
        ctx = AttentionContext(mask=mask, causal=False, rope=(cos.to(x.dtype), sin.to(x.dtype)),
                               input_pos=torch.arange(x.shape[1], device=x.device))
        for block in self.blocks:
            x = block(x, ctx)
        return x[0]


class PixtralProjector(nn.Module):
    """Mistral3MultiModalProjector: RMSNorm, the patch merger, linear_1, act, linear_2."""

    def __init__(self, v):
        super().__init__()
        self.v = v
        self.norm = RMSNorm(v.width, v.projector_eps)
        self.merge = Linear(v.width * v.merge_size ** 2, v.width, bias=False)
        self.fc1 = Linear(v.width, v.out_width, bias=v.projector_bias)
        self.fc2 = Linear(v.out_width, v.out_width, bias=v.projector_bias)

    def forward(self, x: torch.Tensor, grids: list[tuple[int, int]]) -> torch.Tensor:
        """x (P, width) -> (G, out_width): each image's (rows / m) (cols / m) groups, row by row (remainders
        dropped, as unfold drops them)."""
        m, c = self.v.merge_size, x.shape[-1]
        x = self.norm(x)
        groups = [F.unfold(img.view(h, w, c).permute(2, 0, 1)[None], kernel_size=m, stride=m)[0].T  # (G_n, c m m)
                  for img, (h, w) in zip(x.split([h * w for h, w in grids]), grids)]
        return self.fc2(ACTIVATIONS[self.v.projector_act](self.fc1(self.merge(torch.cat(groups)))))


class PixtralImageInputs(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.v = pixtral_vision_config(cfg.vision)  # its out_width checked against d_model: config.check_vision
        self.tower = PixtralTower(self.v)
        self.projector = PixtralProjector(self.v)

    def held_modules(self) -> list[nn.Module]:
        return []

    def text_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return ids  # [IMG] is in the vocabulary; its rows are overwritten

    def forward(self, embeds: torch.Tensor, ids: torch.Tensor, pixel_values: torch.Tensor,
                pixel_mask: torch.Tensor | None = None, image_sizes=None) -> torch.Tensor:
        """embeds (B, T, C) of ids (B, T); pixel_values (N, channels, H, W), image_sizes (N, 2) each image's real
        (height, width) within them (None: all H x W) -> embeds with the images' merged features at the [IMG]
        positions, image after image."""
        v = self.v
        if pixel_mask is not None:
            raise LlmarchError("a pixel mask is for a tower with position_buckets (Idefics3's); Pixtral reads "
                               "image_sizes")
        if pixel_values.dim() != 4 or pixel_values.shape[1] != v.channels:
            raise LlmarchError(f"Pixtral pixel_values must have shape (images, {v.channels}, height, width), got "
                               f"{tuple(pixel_values.shape)}")
        n, _, H, W = pixel_values.shape
        sizes = [(H, W)] * n if image_sizes is None else image_sizes_list(image_sizes, n)
        if any(h > H or w > W or h < v.patch_size * v.merge_size or w < v.patch_size * v.merge_size
               for h, w in sizes):
            raise LlmarchError(f"image_sizes {sizes} must lie within pixel_values' {H}x{W} and hold at least "
                               f"{v.merge_size}x{v.merge_size} patches of {v.patch_size}")
        grids = [(h // v.patch_size, w // v.patch_size) for h, w in sizes]
        features = self.projector(self.tower(pixel_values, grids), grids).to(embeds.dtype)
        where = ids == v.image_token_id  # (B, T)
        if int(where.sum()) != features.shape[0]:
            raise LlmarchError(f"images of sizes {sizes} give {features.shape[0]} features; input_ids hold "
                               f"{int(where.sum())} image tokens (id {v.image_token_id})")
        return embeds.masked_scatter(where[..., None], features)
