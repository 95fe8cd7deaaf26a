"""Images as text embeddings: the tower's features projected into the text model's width, each written at one
image-token position of the text embeddings, in order (image n fills the n-th run of tokens_per_image image tokens,
counting row by row, as transformers' masked_scatter does). After that the text model reads them as any embedding.
A held tower (VisionConfig.held: GIT's image encoder) keeps its weights for the round trip and reads no images."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import LlmarchError
from .config import vision_config
from .projector import PROJECTORS
from .tower import VisionTower


def check_image_arguments(pixel_values, image_grid_thw, pixel_attention_mask, image_sizes) -> None:
    """forward's and generate's arguments that describe pixel_values (Idefics3's pixel mask, AnyRes image sizes):
    refused without them, or beside Qwen-VL's image_grid_thw, whose tower reads neither (never dropped unread)."""
    for name, value, what in (("image_sizes", image_sizes, "AnyRes pixel_values (vision grid_pinpoints)"),
                              ("pixel_attention_mask", pixel_attention_mask,
                               "the real pixels of padded pixel_values (vision position_buckets)")):
        if value is not None and (pixel_values is None or image_grid_thw is not None):
            raise LlmarchError(f"{name} describes {what}: given without them")


class ImageInputs(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.v = vision_config(cfg.vision)
        self.tower = VisionTower(self.v)
        self.projector = PROJECTORS[self.v.projector](self.v, cfg.d_model)
        # the text model scales its token embeddings by sqrt(d_model) (Gemma) after this; transformers scales them
        # inside its embedding module, so its image features are never scaled: ours are divided by the same factor
        self.embed_scale = cfg.d_model ** 0.5 if cfg.embed_scale else None

    def held_modules(self) -> list[nn.Module]:
        """A held tower and its projector (never run; adapters/targets.py leaves them out of an adapter's targets)."""
        return [self.tower, self.projector] if self.v.held else []

    def text_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """ids with the image token as 0, which the embedding can look up (PaliGemma's image token is past the
        vocabulary); its positions are overwritten."""
        return ids if self.v.held else ids.masked_fill(ids == self.v.image_token_id, 0)

    def forward(self, embeds: torch.Tensor, ids: torch.Tensor, pixel_values: torch.Tensor,
                pixel_mask: torch.Tensor | None = None, image_sizes=None) -> torch.Tensor:
        """embeds (B, T, C) of ids (B, T); pixel_values (N, channels, H, W) (pixel_mask (N, H, W): their real
        pixels, for a tower with position_buckets) -> embeds with the N images' features at the image-token
        positions. image_sizes: AnyRes's (anyres.py), refused here."""
        if image_sizes is not None:
            raise LlmarchError("image_sizes are for AnyRes images (vision grid_pinpoints); this tower reads "
                               f"{self.v.image_size}x{self.v.image_size} images whatever their size")
        if self.v.held:
            raise LlmarchError("this model's vision tower is held for the round trip, never run (its image features "
                               "do not go at image-token positions): it reads text only")
        features = self.tower(pixel_values, pixel_mask)
        if getattr(self.projector, "reads_patch_mask", False):  # Idefics2's resampler attends to real patches only
            features = self.projector(features, self.tower.real_patches(pixel_values, pixel_mask))
        else:
            features = self.projector(features)
        return self.scatter(embeds, ids, features)

    def scatter(self, embeds: torch.Tensor, ids: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """embeds (B, T, C) with features (N, per, C) written at ids' image-token positions, in order."""
        where = ids == self.v.image_token_id  # (B, T)
        features = features.to(embeds.dtype)  # (N, per, C)
        (n, per), count = features.shape[:2], int(where.sum())  # per varies with the image size (position_buckets)
        if count != n * per:
            raise LlmarchError(f"{n} image(s) of {per} features each need {n * per} image tokens (id "
                               f"{self.v.image_token_id}) in input_ids, which hold {count}")
        if self.embed_scale is not None:
            features = features / torch.tensor(self.embed_scale, dtype=features.dtype)
        return embeds.masked_scatter(where[..., None], features)
