"""The ViT of CLIP and SigLIP (Dosovitskiy et al. 2021, eq. 1-4): each patch_size x patch_size patch embedded by a
convolution of that stride, a learned class embedding before them (CLIP), learned positions added, a LayerNorm on
the sum (CLIP's pre_layrnorm), then pre-norm transformer blocks with bidirectional attention (llmarch's own Block,
built from a ModelConfig of the tower's shape) and, for SigLIP, a LayerNorm on the output. Shapes: (B, T, C) with
T = patches (+ 1 class token)."""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import LlmarchError
from ..layers.attention import AttentionContext
from ..layers.block import Block
from ..layers.norms import make_norm
from .buckets import bucket_positions, patch_mask
from .config import VisionConfig


def block_config(v: VisionConfig) -> ModelConfig:
    """The tower's blocks as llmarch blocks: LayerNorms with bias (or InternViT's RMSNorms), multi-head attention and
    an MLP with biases (InternViT's q, k, v may have none), bidirectional, no rotary positions (the learned ones are
    added to the embeddings); InternViT's QK-norm over the whole projections (OLMo 2's 'proj', an RMSNorm of eps 1e-6
    whatever the tower's: InternVLVisionRMSNorm's default) and layer scale (layers/residual_mix.py)."""
    qk = dict(qk_norm="proj", qk_norm_kind="rmsnorm", qk_norm_eps=1e-6) if v.qk_norm else {}
    return ModelConfig(name="vision", vocab_size=1, d_model=v.width, n_layers=v.n_layers, n_heads=v.n_heads,
                       ffn=v.act, ffn_hidden=v.ffn_hidden, norm=v.norm, norm_eps=v.norm_eps, bias=True,
                       qkv_bias=v.qkv_bias, residual_mix="layer_scale" if v.layer_scale else "none", causal=False,
                       positions="none", context_length=v.n_positions, **qk)


def axial_rope(v: VisionConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Llama 4's 2-D RoPE (transformers' Llama4VisionRotaryEmbedding) as cos, sin (1, P + 1, D) for apply_rotary's
    halves: of each head's D / 2 pairs, pair j < D / 4 turns by (column + 1) theta^(-4j / D) and pair D / 4 + j by
    (row + 1) theta^(-4j / D), the patches row by row; the class token, last, does not turn. HF's pairs are
    adjacent dims (2j, 2j + 1), ours j and j + D / 2: q's and k's rows are reordered on import (llama4_vision.py)."""
    side, D = v.image_size // v.patch_size, v.width // v.n_heads
    freq = 1.0 / v.rope_theta ** (torch.arange(0, D // 2, 2, device=device)[:D // 4].float() / (D // 2))  # (D/4,)
    patch = torch.arange(side * side, device=device)
    angles = torch.cat((((patch % side + 1)[:, None] * freq), ((patch // side + 1)[:, None] * freq)), dim=-1)
    angles = torch.cat((angles, angles.new_zeros(1, D // 2)))  # (P + 1, D/2): the class token's 0
    angles = torch.cat((angles, angles), dim=-1)[None]
    return angles.cos(), angles.sin()


class VisionTower(nn.Module):
    def __init__(self, v: VisionConfig):
        super().__init__()
        self.v = v
        cfg = block_config(v)
        self.patch = nn.Conv2d(v.channels, v.width, v.patch_size, stride=v.patch_size, bias=v.patch_bias)
        self.class_embed = nn.Parameter(torch.zeros(v.width)) if v.class_token else None
        self.positions = nn.Embedding(v.n_positions, v.width)
        self.pre_norm = make_norm(cfg) if v.pre_norm else None
        self.blocks = nn.ModuleList(Block(cfg.for_layer(i), layer=i) for i in range(v.n_layers))
        self.post_norm = make_norm(cfg) if v.post_norm else None

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None) -> torch.Tensor:
        """pixel_values (N, channels, image_size, image_size), preprocessed as the checkpoint's image processor does
        (with position_buckets (N, channels, H, W), and pixel_mask (N, H, W) its real pixels, None: all)
        -> the features (N, T', feature_width): feature_layers' hidden states side by side, or the output."""
        v = self.v
        size = pixel_values.shape[2:] if v.position_buckets else (v.image_size, v.image_size)
        if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != (v.channels, *size):
            raise LlmarchError(f"pixel_values must have shape (images, {v.channels}, {size[0]}, {size[1]}), "
                               f"got {tuple(pixel_values.shape)}")
        if pixel_mask is not None and not v.position_buckets:
            raise LlmarchError("a pixel mask is for a tower with position_buckets (Idefics3's)")
        x = self.patch(pixel_values.to(self.patch.weight.dtype)).flatten(2).transpose(1, 2)  # (N, P, C)
        if self.class_embed is not None:
            cls = self.class_embed.expand(x.shape[0], 1, -1)
            x = torch.cat([x, cls] if v.class_last else [cls, x], dim=1)
        mask = None
        if v.position_buckets:
            real = patch_mask(pixel_mask, pixel_values.shape, v.patch_size, v.whole_patches)  # (N, h', w')
            real = real.to(x.device)
            x = x + self.positions(bucket_positions(real, v.image_size // v.patch_size))
            mask = None if bool(real.all()) else real.reshape(x.shape[0], 1, 1, -1)  # padded patches as keys
        else:
            x = x + self.positions.weight
        return self.encode(x, mask)

    def encode(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The embedded patches x (N, T, C), mask bool (N, 1, 1, T) the keys attended to (None: all) -> the
        features: through the pre-norm, the blocks, and the post-norm or feature_layers' selection."""
        v = self.v
        if self.pre_norm is not None:
            x = self.pre_norm(x)
        wanted = None if v.feature_layers is None else [v.hidden_index(i) for i in v.feature_layers]
        rope = None if v.rope_theta is None else tuple(t.to(x.dtype) for t in axial_rope(v, x.device))
        ctx = AttentionContext(mask=mask, causal=False, rope=rope, input_pos=torch.arange(x.shape[1], device=x.device))
        hidden = [x]  # hidden[k]: the input of block k, transformers' hidden_states[k]
        for block in self.blocks[:len(self.blocks) if wanted is None else max(wanted)]:
            hidden.append(block(hidden[-1], ctx))
        if wanted is None:
            out = hidden[-1] if self.post_norm is None else self.post_norm(hidden[-1])
            return out[:, :-1] if v.class_last else out
        out = torch.cat([hidden[k] for k in wanted], dim=-1)
        return out[:, 1:] if v.drop_first else out

    def real_patches(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None) -> torch.Tensor | None:
        """bool (N, P): the patches forward reads as real, None where all are (no pixel mask)."""
        if pixel_mask is None:
            return None
        return patch_mask(pixel_mask, pixel_values.shape, self.v.patch_size, self.v.whole_patches).flatten(1).to(
            pixel_values.device)
