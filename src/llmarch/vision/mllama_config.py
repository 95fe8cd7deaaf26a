"""The vision part of a ModelConfig for Llama 3.2 Vision (`ModelConfig.vision` with tower 'mllama'; Meta 2024, "The
Llama 3 Herd of Models", \u00a77.2; transformers' MllamaVisionModel): each image resized into up to max_tiles tiles of
image_size pixels (their arrangement one of the supported aspect ratios), a ViT over each tile's patches and class
token with gated positional and aspect-ratio embeddings, a local transformer of n_layers blocks, then a global one of
n_global_layers tanh-gated blocks over all tiles of the image together; the global output and the local blocks'
hidden states at feature_layers side by side, one linear projector into the text width. Its features are not
written at image-token positions: the text model's cross-attention layers read them (layers/vision_cross.py). A
sibling of config.py's ViT rather than more fields of it: tiles, two transformers and the cross-attention path are
its own. Validated here, before anything is built."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import LlmarchError
from .fields import check_numbers, check_positive, read_fields

TOWER = "mllama"  # ModelConfig.vision's `tower` for this config


@dataclass(frozen=True)
class MllamaVisionConfig:
    tower: str  # TOWER
    image_token_id: int  # <|image|>: the token each image's cross-attention span starts at
    width: int  # the tower's residual width
    n_layers: int  # the local transformer's blocks
    n_global_layers: int  # the global transformer's (tanh-gated) blocks
    n_heads: int
    ffn_hidden: int
    out_width: int  # the projector's output, the text model's width
    feature_layers: list  # the local blocks whose outputs join the features (intermediate_layers_indices)
    # the tile arrangements (width, height) in tiles (supported_aspect_ratios); aspect_ratio_ids count from 1 in
    # this order, 0 a padded image
    aspect_ratios: list
    max_tiles: int = 4  # the most tiles of one image (max_num_tiles)
    image_size: int = 448  # a tile's side
    patch_size: int = 14
    channels: int = 3
    act: str = "gelu"
    norm_eps: float = 1e-5

    @property
    def n_positions(self) -> int:
        """A tile's positions: its patches and the class token."""
        return (self.image_size // self.patch_size) ** 2 + 1

    @property
    def feature_width(self) -> int:
        """What the projector reads: the global output and each feature layer's hidden state (vision_output_dim)."""
        return self.width * (1 + len(self.feature_layers))


def is_mllama(data: dict | None) -> bool:
    return data is not None and data.get("tower") == TOWER


def mllama_vision_config(data: dict) -> MllamaVisionConfig:
    """ModelConfig.vision's dict as a MllamaVisionConfig, every field checked; an unknown field is an error."""
    v = read_fields(MllamaVisionConfig, data, "mllama vision", lists=("feature_layers", "aspect_ratios"))
    check_positive(v, ("image_token_id", "width", "n_layers", "n_global_layers", "n_heads", "ffn_hidden",
                       "out_width", "max_tiles", "image_size", "patch_size", "channels"))
    check_numbers(v, ("norm_eps",))
    if v.width % v.n_heads or v.image_size % v.patch_size:
        raise LlmarchError(f"mllama vision width {v.width} must divide by n_heads {v.n_heads} and image_size "
                           f"{v.image_size} by patch_size {v.patch_size}")
    if not v.feature_layers or any(not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < v.n_layers
                                   for i in v.feature_layers):
        raise LlmarchError(f"mllama vision feature_layers {v.feature_layers} must be local block indices in "
                           f"[0, {v.n_layers - 1}]")
    if not v.aspect_ratios or any(not isinstance(r, list) or len(r) != 2 or any(
            not isinstance(n, int) or isinstance(n, bool) or n <= 0 for n in r) or r[0] * r[1] > v.max_tiles
            for r in v.aspect_ratios):
        raise LlmarchError(f"mllama vision aspect_ratios must be [width, height] tile counts of at most "
                           f"max_tiles={v.max_tiles} tiles; got {v.aspect_ratios!r}")
    return v
