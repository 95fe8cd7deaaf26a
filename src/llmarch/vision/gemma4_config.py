"""The vision part of a ModelConfig for Gemma 4's tower and embedder (`ModelConfig.vision` with tower 'gemma4'; Gemma
Team 2026, Gemma 4 model card; transformers' Gemma4VisionModel and Gemma4MultimodalEmbedder): patchified images of any
aspect ratio, a linear patch embedding plus a learned 2-D position table (a row per column index, a row per row
index), Gemma 4's own blocks (sandwich RMSNorms, QK-norm, a gainless value norm, unscaled scores, axial 2-D RoPE, a
GeGLU, optionally clipped linears), each image's grid average-pooled by pooling x pooling and scaled by sqrt(width),
optionally standardized, then a gainless RMSNorm and one linear map into the text model's width. A sibling of
pixtral_config.py: its positions, pooling and blocks are its own. Validated here, before anything is built."""
from __future__ import annotations

from dataclasses import dataclass, fields

from ..errors import LlmarchError
from ..layers.ffn import ACTIVATIONS
from .anyres_grid import image_sizes_list
from .fields import check_numbers, check_positive, check_switches, check_token_id, read_fields

TOWER = "gemma4"  # ModelConfig.vision's `tower` for this config


@dataclass(frozen=True)
class Gemma4VisionConfig:
    tower: str  # TOWER
    image_token_id: int  # <|image|>: each of its positions takes one pooled feature
    width: int  # the tower's residual width
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn_hidden: int
    out_width: int  # the embedder's output, the text model's width
    act: str = "gelu_tanh"  # the GeGLU's activation (hidden_activation gelu_pytorch_tanh)
    patch_size: int = 16
    positions: int = 10240  # rows of each axis' position table (position_embedding_size): the largest patch index + 1
    pooling: int = 3  # pooling x pooling patches -> one feature (pooling_kernel_size)
    norm_eps: float = 1e-6
    rope_theta: float = 100.0  # the 2-D RoPE's base
    # the tower's linear maps clamp their inputs and outputs to stored bounds (use_clipped_linears: every published
    # checkpoint's; layers/clipped_linear.py)
    clipped: bool = False
    standardize: bool = False  # the pooled features become (x - std_bias) * std_scale (the 26B and 31B towers)

    @property
    def patch_dim(self) -> int:
        return 3 * self.patch_size ** 2

    def grids(self, image_sizes, n: int) -> list[tuple[int, int]]:
        """Each image's (rows, columns) of patches, from image_sizes (n, 2): its (height, width) in pixels."""
        sizes = image_sizes_list(image_sizes, n)
        side = self.patch_size * self.pooling
        if any(h % side or w % side or not h * w for h, w in sizes):
            raise LlmarchError(f"image_sizes {sizes} must be positive multiples of patch_size x pooling = {side}")
        return [(h // self.patch_size, w // self.patch_size) for h, w in sizes]

    def image_tokens(self, images: dict) -> list[int]:
        """The image-token positions each image fills, of the image processor's output (preprocess.py)."""
        if images.get("image_sizes") is None:
            raise LlmarchError("Gemma 4's images need image_sizes beside pixel_values")
        grids = self.grids(images["image_sizes"], images["pixel_values"].shape[0])
        return [h * w // self.pooling ** 2 for h, w in grids]


def is_gemma4(data: dict | None) -> bool:
    """Whether ModelConfig.vision is this tower's (its `tower` field; None: a text model)."""
    return (data or {}).get("tower") == TOWER


def gemma4_vision_config(data: dict) -> Gemma4VisionConfig:
    """ModelConfig.vision's dict as a Gemma4VisionConfig, every field checked; an unknown field is an error."""
    v = read_fields(Gemma4VisionConfig, data, "gemma4 vision")
    check_positive(v, tuple(f.name for f in fields(v) if f.type == "int" and f.name != "image_token_id"))
    check_token_id(v.image_token_id)
    if v.head_dim % 4 or v.n_heads % v.n_kv_heads:
        raise LlmarchError(f"vision head_dim {v.head_dim} must be a multiple of 4 (half of each head turns by the "
                           f"column, half by the row) and n_kv_heads {v.n_kv_heads} divide n_heads {v.n_heads}")
    if v.act not in ACTIVATIONS:
        raise LlmarchError(f"vision act {v.act!r}: activations are {', '.join(ACTIVATIONS)}")
    check_switches(v, ("clipped", "standardize"))
    check_numbers(v, ("norm_eps", "rope_theta"))
    return v
