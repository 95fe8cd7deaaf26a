"""Qwen2-VL's and Qwen2.5-VL's vision tower (Wang et al. 2024, "Qwen2-VL", \u00a72.1; Bai et al. 2025, "Qwen2.5-VL",
\u00a72.1): every patch of every image, flattened as the image processor lays them out (qwen_pixels.py), embedded by a
(frames x patch x patch) convolution of that stride, then llmarch's own pre-norm Blocks with bidirectional attention
over each image's patches alone and 2-D RoPE: a quarter of each head's pairs turns by the patch's row, a quarter by
its column, the other half repeating them (transformers' half-split layout). Qwen2.5-VL's blocks outside full_layers
attend within windows of window_size pixels; the patches are first reordered window by window (in units of the
merger's merge_size x merge_size groups), so each window is a contiguous run, and the merged tokens put back in
image order at the end. The merger (qwen_merger.py) turns each group into one text-width feature. Qwen3-VL adds to
the patch embeddings learned positions resampled to each image's grid, and its DeepStack mergers turn the hidden states
after some blocks into features of their own, which the text model adds after its first blocks. GLM-4V's tower
(Hong et al. 2025, "GLM-4.1V-Thinking", \u00a72) is Qwen2.5-VL's without windows plus an RMSNorm on the patch
embeddings, its learned positions resampled bicubically (F.grid_sample at each patch's centre, as transformers'
Glm4vVisionEmbeddings), an RMSNorm after the blocks and the gated merger (qwen_merger.GatedMerger).
Shapes: (P, C) over all images' patches P, packed; images are kept apart by the attention mask."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..layers.attention import AttentionContext
from ..layers.block import Block
from ..layers.norms import RMSNorm
from .qwen_config import QwenVisionConfig
from .qwen_merger import GatedMerger, PatchMerger

NORM_EPS = 1e-6  # transformers' vision blocks and merger hard-code it


def block_config(v: QwenVisionConfig) -> ModelConfig:
    """The tower's blocks as llmarch blocks: biases on every projection, the norms' per the config, bidirectional,
    rotary positions given by the tower (none of the stack's); GLM-4V's without biases but perhaps on q, k, v."""
    return ModelConfig(name="qwen_vision", vocab_size=1, d_model=v.width, n_layers=v.n_layers, n_heads=v.n_heads,
                       ffn=v.ffn, ffn_hidden=v.ffn_hidden, norm=v.norm, norm_eps=v.norm_eps,
                       norm_bias=v.norm == "layernorm", bias=v.bias, qkv_bias=v.qkv_bias, causal=False,
                       positions="none",
                       context_length=2 ** 20)


def patch_positions(grid: torch.Tensor, m: int) -> torch.Tensor:
    """(P, 2) each patch's (row, column) in its image, patches ordered as the processor lays them out: merge groups
    of m x m row by row, each group's patches row by row, frames one after another (transformers'
    get_vision_position_ids)."""
    out = []
    for t, h, w in grid.tolist():
        rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        block = (h // m, m, w // m, m)
        rc = torch.stack([rows.reshape(block).transpose(1, 2).flatten(), cols.reshape(block).transpose(1, 2).flatten()],
                         dim=-1)
        out.append(rc.repeat(t, 1))
    return torch.cat(out).to(grid.device)


def window_order(grid: torch.Tensor, m: int, per_window: int) -> tuple[torch.Tensor, list[int]]:
    """Qwen2.5-VL's windows: the merge groups reordered window by window (each frame's (h/m) x (w/m) groups cut into
    per_window x per_window windows, the last ones smaller) -> the groups' new order (G,) and each non-empty
    window's length in patches (transformers' get_vision_window_index)."""
    order, lengths, start = [], [], 0
    for t, h, w in grid.tolist():
        gh, gw = h // m, w // m
        index = torch.arange(t * gh * gw).reshape(t, gh, gw)
        for frame in index:
            for r in range(0, gh, per_window):
                for c in range(0, gw, per_window):
                    window = frame[r:r + per_window, c:c + per_window].flatten()
                    order.append(window + start)
                    lengths.append(window.numel() * m * m)
        start += t * gh * gw
    return torch.cat(order).to(grid.device), lengths


def segment_mask(lengths: list[int], device) -> torch.Tensor:
    """bool (1, 1, P, P): patches attend within their own run of `lengths` (an image's frame, or a window)."""
    seg = torch.repeat_interleave(torch.arange(len(lengths), device=device), torch.tensor(lengths, device=device))
    return (seg[:, None] == seg[None, :])[None, None]


class QwenVisionTower(nn.Module):
    def __init__(self, v: QwenVisionConfig):
        super().__init__()
        self.v = v
        cfg = block_config(v)
        kernel = (v.temporal_patch_size, v.patch_size, v.patch_size)
        self.patch = nn.Conv3d(v.channels, v.width, kernel, stride=kernel, bias=v.patch_bias)
        self.patch_norm = RMSNorm(v.width, v.norm_eps) if v.patch_norm else None
        self.positions = nn.Embedding(v.grid_positions, v.width) if v.grid_positions else None
        self.blocks = nn.ModuleList(Block(cfg.for_layer(i), layer=i) for i in range(v.n_layers))
        self.post_norm = RMSNorm(v.width, v.norm_eps) if v.post_norm else None
        self.merger = GatedMerger(v.width, v.out_width, v.merge_size, v.merger_hidden) if v.merger == "gated" else \
            PatchMerger(v.width, v.out_width, v.merge_size, v.norm, NORM_EPS)
        self.deepstack = nn.ModuleList(PatchMerger(v.width, v.out_width, v.merge_size, v.norm, NORM_EPS, True)
                                       for _ in v.deepstack_layers or ())

    def rotary(self, rc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, 2) rows and columns -> cos, sin (1, P, D): angles [row theta_j, col theta_j] repeated for the halves."""
        half = self.v.head_dim // 2  # the row's and the column's frequencies: theta^(-2j / (D / 2)), j < D / 4
        inv_freq = 1.0 / self.v.rope_theta ** (torch.arange(0, half, 2, device=rc.device).float() / half)
        angles = (rc[..., None].float() * inv_freq).flatten(1)  # (P, D/2): rows', then columns'
        angles = torch.cat((angles, angles), dim=-1)[None]
        return angles.cos(), angles.sin()

    def grid_positions(self, rc: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        """(P, 2) rows and columns -> (P, width): the square table resampled to each image's grid, by the config's
        positions_resample."""
        side = int(round(self.v.grid_positions ** 0.5))
        counts = grid.prod(-1)
        size = torch.stack([torch.repeat_interleave(grid[:, k], counts) for k in (1, 2)], dim=-1)  # (P, 2)
        if self.v.positions_resample == "bicubic":
            return self.bicubic_positions(rc, size, side)
        return self.bilinear_positions(rc, size, side)

    def bicubic_positions(self, rc: torch.Tensor, size: torch.Tensor, side: int) -> torch.Tensor:
        """GLM-4V: the table as a side x side image sampled bicubically at each patch's centre, ((r + 0.5) / rows,
        (c + 0.5) / columns) of its image, corners not aligned, the border repeated (transformers'
        Glm4vVisionEmbeddings), in fp32."""
        table = self.positions.weight.float().view(side, side, -1).permute(2, 0, 1)[None]  # (1, width, side, side)
        at = (rc.float() + 0.5) / size.float() * 2 - 1  # (P, 2) rows, columns in [-1, 1]
        sampled = F.grid_sample(table, at.flip(-1)[None, :, None], mode="bicubic", align_corners=False,
                                padding_mode="border")  # (1, width, P, 1): grid_sample takes (x, y)
        return sampled[0, :, :, 0].T.to(self.positions.weight.dtype)

    def bilinear_positions(self, rc: torch.Tensor, size: torch.Tensor, side: int) -> torch.Tensor:
        """Qwen3-VL: bilinear with corners aligned (F.interpolate's, as transformers'
        get_vision_interpolation_indices_and_weights gathers it)."""
        src = rc.to(torch.float32) * (side - 1) / torch.clamp(size - 1, min=1)  # (P, 2) in table coordinates
        floor = torch.floor(src)
        offsets = torch.arange(2, device=rc.device)
        taps = (floor.long()[..., None] + offsets).clamp(0, side - 1)  # (P, 2, 2): each axis' two neighbours
        weights = (1 - (src[..., None] - floor[..., None] - offsets).abs()).clamp(min=0)
        index = (taps[:, 0, :, None] * side + taps[:, 1, None, :]).flatten(1)  # (P, 4)
        w = (weights[:, 0, :, None] * weights[:, 1, None, :]).flatten(1)
        return (self.positions(index) * w[..., None]).sum(1)

    def forward(self, pixel_values: torch.Tensor, grid: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """pixel_values (P, patch_dim), grid (N, 3) each image's (frames, rows, columns) of patches -> the merged
        features (P / merge_size^2, out_width), image after image, and the DeepStack features, each of that shape."""
        v, m = self.v, self.v.merge_size
        x = self.patch(pixel_values.to(self.patch.weight.dtype).view(-1, v.channels, v.temporal_patch_size,
                                                                      v.patch_size, v.patch_size)).view(-1, v.width)
        if self.patch_norm is not None:
            x = self.patch_norm(x)
        rc = patch_positions(grid, m)
        if self.positions is not None:
            x = x + self.grid_positions(rc, grid).to(x.dtype)
        cos, sin = self.rotary(rc)
        frames = torch.repeat_interleave(grid[:, 1] * grid[:, 2], grid[:, 0]).tolist()
        full = segment_mask(frames, x.device)
        masks = [full] * v.n_layers
        order = None
        if v.window_size is not None:
            order, lengths = window_order(grid, m, v.window_size // m // v.patch_size)
            patches = (order[:, None] * m * m + torch.arange(m * m, device=x.device)).flatten()  # groups -> patches
            x, cos, sin = x[patches], cos[:, patches], sin[:, patches]
            windowed = segment_mask(lengths, x.device)
            masks = [full if i in v.full_layers else windowed for i in range(v.n_layers)]
        x = x[None]  # (1, P, C): one packed sequence
        deep = []
        for i, (block, mask) in enumerate(zip(self.blocks, masks)):
            ctx = AttentionContext(mask=mask, causal=False, rope=(cos, sin),
                                   input_pos=torch.arange(x.shape[1], device=x.device))
            x = block(x, ctx)
            if v.deepstack_layers is not None and i in v.deepstack_layers:
                deep.append(self.deepstack[v.deepstack_layers.index(i)](x[0]))
        x = x[0] if self.post_norm is None else self.post_norm(x[0])
        merged = self.merger(x)  # (G, out_width)
        return (merged, deep) if order is None else (merged[torch.argsort(order)], deep)
