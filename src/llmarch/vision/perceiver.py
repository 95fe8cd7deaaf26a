"""Idefics2's connector (Lauren\u00e7on et al. 2024, "What matters when building vision-language models?", \u00a73.1;
transformers' Idefics2Connector), the `perceiver` projector: the tower's patch features mapped into the text width
by a gated MLP (the modality projection), then a perceiver resampler (Jaegle et al. 2021, "Perceiver", \u00a72.1;
Alayrac et al. 2022, "Flamingo", \u00a72.1): `latents` learned queries, each layer
    l += Attn(q = W_q RMS(l), k, v = W_k, W_v [RMS(c); RMS(l)]);  l += W_d (act(W_g RMS(l)) * W_u RMS(l))
with grouped key/value heads, no positions, the padded patches of c masked out as keys; then a final RMSNorm. Each
image becomes `latents` features whatever its size. Shapes: N images, P patches, L latents, C text width."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..layers.ffn import ACTIVATIONS
from ..layers.linear import Linear
from ..layers.norms import RMSNorm
from .config import VisionConfig
from .resampler_config import resampler_config


class GatedMLP(nn.Module):
    """down(act(gate x) * up x), no biases (transformers' Idefics2MLP), from `dim` to `out` through `hidden`."""

    def __init__(self, dim: int, hidden: int, out: int, act: str):
        super().__init__()
        self.gate, self.up, self.down = Linear(dim, hidden, bias=False), Linear(dim, hidden, bias=False), \
            Linear(hidden, out, bias=False)
        self.act = ACTIVATIONS[act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.gate(x)) * self.up(x))


class PerceiverLayer(nn.Module):
    def __init__(self, r, width: int):
        super().__init__()
        self.r = r
        self.latents_norm, self.context_norm = RMSNorm(width, r.eps), RMSNorm(width, r.eps)
        self.q = Linear(width, r.n_heads * r.head_dim, bias=False)
        self.k = Linear(width, r.kv_heads * r.head_dim, bias=False)
        self.v = Linear(width, r.kv_heads * r.head_dim, bias=False)
        self.o = Linear(r.n_heads * r.head_dim, width, bias=False)
        self.ffn_norm = RMSNorm(width, r.eps)
        self.mlp = GatedMLP(width, 4 * width, width, r.act)

    def forward(self, latents: torch.Tensor, context: torch.Tensor, keys: torch.Tensor | None) -> torch.Tensor:
        """latents (N, L, C), context (N, P, C), keys: bool (N, 1, 1, P + L) the keys attended to, None all."""
        r, (n, L, _) = self.r, latents.shape
        normed = self.latents_norm(latents)
        both = torch.cat([self.context_norm(context), normed], dim=1)  # (N, P + L, C): keys over context, latents
        q = self.q(normed).view(n, L, r.n_heads, r.head_dim).transpose(1, 2)  # (N, H, L, D)
        k, v = (p(both).view(n, both.shape[1], r.kv_heads, r.head_dim).transpose(1, 2) for p in (self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=keys, enable_gqa=r.n_heads > r.kv_heads)
        latents = latents + self.o(y.transpose(1, 2).reshape(n, L, -1))
        return latents + self.mlp(self.ffn_norm(latents))


class PerceiverProjector(nn.Module):
    reads_patch_mask = True  # ImageInputs passes the real patches, which the resampler attends to

    def __init__(self, v: VisionConfig, d_model: int):
        super().__init__()
        r = resampler_config(v.resampler, ACTIVATIONS)
        self.projection = GatedMLP(v.feature_width, r.proj_hidden, d_model, r.proj_act)
        self.latents = nn.Parameter(torch.ones(r.latents, d_model))
        self.layers = nn.ModuleList(PerceiverLayer(r, d_model) for _ in range(r.depth))
        self.norm = RMSNorm(d_model, r.eps)

    def forward(self, f: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        """f (N, P, feature_width), real bool (N, P) the real patches (None: all) -> (N, L, C)."""
        context = self.projection(f)
        latents = self.latents.expand(f.shape[0], -1, -1)
        keys = None
        if real is not None:
            keys = torch.cat([real, real.new_ones(real.shape[0], latents.shape[1])], dim=1)[:, None, None]
        for layer in self.layers:
            latents = layer(latents, context, keys)
        return self.norm(latents)
