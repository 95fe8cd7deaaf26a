"""Llama 3.2 Vision's image encoder (Meta 2024, "The Llama 3 Herd of Models", \u00a77.2.1; transformers'
MllamaVisionModel) and the image states its text model's cross-attention layers read. Shapes: B rows of text, N images
a row, K = max_tiles tiles an image, P = patches + 1 (class token) positions a tile, padded to P' (a multiple of 8).
- tiles: each tile's patches embedded by a patch_size convolution (no bias), plus tanh(g) times an embedding of the
  image's aspect ratio per tile (pre_tile); a class token before each tile's patches; positions
  (1 - tanh(g)) E_pos + tanh(g) E_tile[aspect ratio] (gated_positional_embedding); a LayerNorm.
- the local transformer: llmarch's blocks (vision/tower.py's block_config, no attention biases) over all K P' positions
  of an image at once, a LayerNorm, the aspect-ratio embedding again (post_tile), the global transformer of tanh-gated
  blocks (residual_mix 'tanh_gate'). Attention is barred only between two padded positions (a padded tile, or a
  patch added to reach P'), as transformers' _prepare_aspect_ratio_attention_mask bars it.
- features: the global output and the local blocks' outputs at feature_layers (channel-interleaved, as transformers
  stacks them on a last axis), the padding patches dropped, through one linear projector: (B, N K P, C).
- the cross-attention mask (MllamaProcessor's, from the ids): the k-th image token of a row and the tokens after it
  up to the next image token that does not follow it directly see the k-th image's real tiles (aspect_ratio_mask)."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import LlmarchError
from ..layers.attention import AttentionContext
from ..layers.block import Block
from ..layers.linear import Linear
from ..layers.norms import make_norm
from .config import VisionConfig
from .mllama_config import mllama_vision_config
from .tower import block_config


def _block_config(v, n_layers: int, gated: bool):
    vit = VisionConfig(image_token_id=0, width=v.width, n_layers=n_layers, n_heads=v.n_heads, ffn_hidden=v.ffn_hidden,
                       act=v.act, image_size=v.image_size, patch_size=v.patch_size, norm_eps=v.norm_eps, qkv_bias=False)
    return block_config(vit).replace(o_bias=False, context_length=v.max_tiles * _padded(v.n_positions),
                                     residual_mix="tanh_gate" if gated else "none")


def _padded(n: int) -> int:
    return n + (8 - n % 8) % 8


class AspectRatioEmbedding(nn.Module):
    """tanh(g) times a learned vector per tile of each aspect ratio (per position too with `positions`), and for
    positions (1 - tanh(g)) times the learned positions added as well."""

    def __init__(self, v, positions: int = 0):
        super().__init__()
        self.shape = (v.max_tiles, positions or 1, v.width)
        self.embedding = nn.Embedding(len(v.aspect_ratios) + 1, v.max_tiles * (positions or 1) * v.width)
        self.gate = nn.Parameter(torch.zeros(1))
        self.positions = nn.Parameter(torch.zeros(positions, v.width)) if positions else None

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:  # x (M, K, P, C), ids (M,)
        g = self.gate.tanh()
        if self.positions is not None:
            x = x + (1 - g) * self.positions
        return x + g * self.embedding(ids).view(-1, *self.shape)


class MllamaVisionTower(nn.Module):
    def __init__(self, v):
        super().__init__()
        if v.n_positions % 8 == 0:  # transformers then masks every position (its padding slice [-0:] is all)
            raise LlmarchError(f"mllama vision: {v.n_positions} positions a tile (patches and class token) is a "
                               "multiple of 8, which transformers' tower masks whole")
        self.v = v
        self.patch = nn.Conv2d(v.channels, v.width, v.patch_size, stride=v.patch_size, bias=False)
        self.class_embed = nn.Parameter(torch.zeros(v.width))
        self.pre_tile, self.post_tile = AspectRatioEmbedding(v), AspectRatioEmbedding(v)
        self.positions = AspectRatioEmbedding(v, v.n_positions)
        local, glob = _block_config(v, v.n_layers, False), _block_config(v, v.n_global_layers, True)
        norm = local.replace(norm_eps=1e-5)  # layernorm_pre and _post: nn.LayerNorm's default eps
        self.pre_norm, self.post_norm = make_norm(norm), make_norm(norm)
        self.blocks = nn.ModuleList(Block(local.for_layer(i), layer=i) for i in range(v.n_layers))
        self.global_blocks = nn.ModuleList(Block(glob.for_layer(i), layer=i) for i in range(v.n_global_layers))

    def forward(self, pixel_values: torch.Tensor, aspect_ratio_ids: torch.Tensor,
                aspect_ratio_mask: torch.Tensor) -> torch.Tensor:
        """pixel_values (B, N, K, channels, image_size, image_size), aspect_ratio_ids (B, N), aspect_ratio_mask
        (B, N, K), as MllamaImageProcessor makes them -> features (B, N, K, P, feature_width)."""
        v = self.v
        B, N, K = pixel_values.shape[:3]
        P, Pp, C = v.n_positions, _padded(v.n_positions), v.width
        x = self.patch(pixel_values.flatten(0, 2).to(self.patch.weight.dtype)).flatten(2).transpose(1, 2)
        ids = aspect_ratio_ids.reshape(B * N)
        x = self.pre_tile(x.reshape(B * N, K, P - 1, C), ids)
        x = torch.cat([self.class_embed.expand(B * N, K, 1, C), x], dim=2)  # (M, K, P, C)
        x = nn.functional.pad(self.pre_norm(self.positions(x, ids)), (0, 0, 0, Pp - P))  # (M, K, P', C)
        padded = (~aspect_ratio_mask.reshape(B * N, K, 1).bool()).expand(-1, -1, Pp).clone()
        padded[:, :, P:] = True
        padded = padded.reshape(B * N, 1, K * Pp)
        mask = ~(padded[..., :, None] & padded[..., None, :])  # (M, 1, K P', K P'): barred between padding only
        ctx = AttentionContext(mask=mask, causal=False, rope=None, input_pos=torch.arange(K * Pp, device=x.device))
        x, hidden = x.reshape(B * N, K * Pp, C), []
        for block in self.blocks:
            x = block(x, ctx)
            hidden.append(x)
        x = self.post_tile(self.post_norm(x).reshape(B * N, K, Pp, C), ids).reshape(B * N, K * Pp, C)
        for block in self.global_blocks:
            x = block(x, ctx)
        layers = torch.stack([hidden[i] for i in v.feature_layers], dim=-1).flatten(-2)  # (M, K P', C n)
        out = torch.cat([x, layers], dim=-1).reshape(B, N, K, Pp, -1)
        return out[:, :, :, :P]


class MllamaImageInputs(nn.Module):
    """The tower and projector; `memory` gives the cross-attention layers their image states and mask."""

    cross = True  # the images are the cross-attention layers' memory, not embeddings at image-token positions

    def __init__(self, cfg):
        super().__init__()
        self.v = mllama_vision_config(cfg.vision)
        self.tower = MllamaVisionTower(self.v)
        self.projector = Linear(self.v.feature_width, cfg.d_model, bias=True)

    def held_modules(self) -> list[nn.Module]:
        return []

    def text_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """The ids as the embedding looks them up: all of them (<|image|> has a row of its own)."""
        return ids

    def memory(self, ids: torch.Tensor, pixel_values: torch.Tensor, aspect_ratio_ids: torch.Tensor | None,
               aspect_ratio_mask: torch.Tensor | None,
               tiles: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """ids (B, T) and the images (the processor's three tensors) -> image states (B, N K P, C) and the tiles
        each token sees, bool (B, T, N K P): tiles (B, T, N, K) where given (MllamaProcessor's cross_attention_mask),
        else as the processor makes them from the ids (cross_attention_mask below)."""
        v = self.v
        if aspect_ratio_ids is None or aspect_ratio_mask is None:
            raise LlmarchError("Llama 3.2 Vision's images need aspect_ratio_ids and aspect_ratio_mask beside "
                               "pixel_values (MllamaImageProcessor makes all three)")
        shape = (ids.shape[0], aspect_ratio_ids.shape[-1], v.max_tiles, v.channels, v.image_size, v.image_size)
        if tuple(pixel_values.shape) != shape or tuple(aspect_ratio_mask.shape) != shape[:3]:
            raise LlmarchError(f"pixel_values {tuple(pixel_values.shape)} and aspect_ratio_mask "
                               f"{tuple(aspect_ratio_mask.shape)} must be (rows, images, tiles, ...) = {shape} and "
                               f"{shape[:3]} for input_ids {tuple(ids.shape)} and aspect_ratio_ids "
                               f"{tuple(aspect_ratio_ids.shape)}")
        if not bool(((aspect_ratio_ids >= 0) & (aspect_ratio_ids <= len(v.aspect_ratios))).all()):
            raise LlmarchError(f"aspect_ratio_ids must lie in 0..{len(v.aspect_ratios)}")
        states = self.projector(self.tower(pixel_values, aspect_ratio_ids, aspect_ratio_mask))  # (B, N, K, P, C)
        if tiles is None:
            tiles = cross_attention_mask(ids, v.image_token_id, aspect_ratio_ids, aspect_ratio_mask)  # (B, T, N, K)
        elif tuple(tiles.shape) != (*ids.shape, *shape[1:3]):
            raise LlmarchError(f"cross_attention_mask {tuple(tiles.shape)} must be (rows, tokens, images, tiles) = "
                               f"{(*ids.shape, *shape[1:3])}")
        mask = tiles.bool().repeat_interleave(v.n_positions, dim=3).flatten(2)
        return states.flatten(1, 3), mask


def cross_attention_mask(ids: torch.Tensor, image_token: int, aspect_ratio_ids: torch.Tensor,
                         aspect_ratio_mask: torch.Tensor) -> torch.Tensor:
    """bool (B, T, N, K): the tiles each token sees (MllamaProcessor's get_cross_attention_token_mask made dense by
    convert_sparse_cross_attention_mask_to_dense): image k's span starts at the row's k-th image token and ends where
    the next run of image tokens starts (a run's images all see the text after it), or at the row's end."""
    image = ids == image_token  # (B, T)
    counts, images = image.sum(1), (aspect_ratio_ids != 0).sum(1)
    if not torch.equal(counts, images):
        raise LlmarchError(f"each row needs one image token (id {image_token}) per image: the rows hold "
                           f"{counts.tolist()} and have {images.tolist()} images (aspect_ratio_ids not 0)")
    starts = image & ~nn.functional.pad(image, (1, 0))[:, :-1]
    run = starts.cumsum(1)  # (B, T): the run of image tokens each token follows (0: none yet)
    B, T = ids.shape
    N = aspect_ratio_ids.shape[1]
    where = torch.full((B, N), T, dtype=torch.long, device=ids.device)  # each image's token (T: none)
    rows, cols = image.nonzero(as_tuple=True)
    where[rows, image.long().cumsum(1)[rows, cols] - 1] = cols
    pos = torch.arange(T, device=ids.device)
    run_of = run.gather(1, where.clamp(max=T - 1))  # (B, N)
    sees = (pos[None, :, None] >= where[:, None, :]) & (run[:, :, None] == run_of[:, None, :])  # (B, T, N)
    return sees[..., None] & aspect_ratio_mask.bool()[:, None]
