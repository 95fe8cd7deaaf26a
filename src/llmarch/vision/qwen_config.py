"""The vision part of a ModelConfig for Qwen2-VL's and Qwen2.5-VL's towers (`ModelConfig.vision` with tower
'qwen_vl'): a ViT over images of any size, each cut into temporal_patch_size x patch_size x patch_size patches
rotated by their (row, column) and merged merge_size x merge_size into one text token (Wang et al. 2024, "Qwen2-VL",
\u00a72.1; Bai et al. 2025, "Qwen2.5-VL", \u00a72.1). A sibling of config.py's VisionConfig rather than more fields
of it: that one is a fixed-size ViT (image_size, learned positions, a class token, hidden-state selection, a
projector kind), none of which this tower has, and what this one has (merging, windows, gated MLPs) none of those
towers use. Validated here, before anything is built; nothing of llmarch's config is imported."""
from __future__ import annotations

from dataclasses import dataclass, fields

from ..errors import LlmarchError

TOWER = "qwen_vl"  # ModelConfig.vision's `tower` for this config
FFNS = ("quick_gelu", "swiglu")  # Qwen2-VL's fc1, QuickGELU, fc2; Qwen2.5-VL's gated SwiGLU, all with biases
NORMS = ("layernorm", "rmsnorm")  # Qwen2-VL's LayerNorms (with biases), Qwen2.5-VL's RMSNorms


@dataclass(frozen=True)
class QwenVisionConfig:
    tower: str  # TOWER
    image_token_id: int  # <|image_pad|>: each of its positions takes one merged feature
    width: int  # the tower's residual width (Qwen2-VL's embed_dim, Qwen2.5-VL's hidden_size)
    n_layers: int
    n_heads: int
    ffn_hidden: int
    out_width: int  # the merger's output, the text model's width
    ffn: str = "quick_gelu"
    norm: str = "layernorm"  # the blocks' and the merger's norm, eps 1e-6 (transformers hard-codes it)
    channels: int = 3
    patch_size: int = 14
    temporal_patch_size: int = 2  # frames per patch: an image is its one frame repeated
    merge_size: int = 2  # merge_size x merge_size neighbouring patches -> one text token
    rope_theta: float = 10000.0  # the tower's 2-D RoPE base
    # Qwen2.5-VL: blocks not in full_layers attend within windows of window_size pixels square; None: every block
    # attends over its whole image (Qwen2-VL)
    window_size: int | None = None
    full_layers: list | None = None

    @property
    def head_dim(self) -> int:
        return self.width // self.n_heads

    @property
    def patch_dim(self) -> int:
        """The length of one flattened patch in pixel_values: channels x frames x patch x patch."""
        return self.channels * self.temporal_patch_size * self.patch_size ** 2


def is_qwen(data: dict | None) -> bool:
    return data is not None and data.get("tower") == TOWER


def qwen_vision_config(data: dict) -> QwenVisionConfig:
    """ModelConfig.vision's dict as a QwenVisionConfig, every field checked; an unknown field is an error."""
    unknown = sorted(set(data) - {f.name for f in fields(QwenVisionConfig)})
    if unknown:
        raise LlmarchError(f"unknown qwen_vl vision field(s): {', '.join(unknown)}")
    v = QwenVisionConfig(**{k: (list(x) if k == "full_layers" and x is not None else x) for k, x in data.items()})
    if not isinstance(v.image_token_id, int) or v.image_token_id < 0:
        raise LlmarchError(f"vision image_token_id must be a token id, got {v.image_token_id!r}")
    for name in ("width", "n_layers", "n_heads", "ffn_hidden", "out_width", "channels", "patch_size",
                 "temporal_patch_size", "merge_size"):
        value = getattr(v, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise LlmarchError(f"vision {name} must be a positive integer, got {value!r}")
    if v.width % v.n_heads or v.head_dim % 4:
        raise LlmarchError(f"vision width {v.width} must split into {v.n_heads} heads of a multiple of 4 dims "
                           "(a quarter of each head turns by the row, a quarter by the column)")
    if v.ffn not in FFNS or v.norm not in NORMS:
        raise LlmarchError(f"vision ffn {v.ffn!r}, norm {v.norm!r}: ffns are {', '.join(FFNS)}; norms "
                           f"{', '.join(NORMS)}")
    windowed = v.window_size is not None
    if windowed != (v.full_layers is not None):
        raise LlmarchError("vision window_size and full_layers go together (Qwen2.5-VL's window attention)")
    if windowed and (not isinstance(v.window_size, int) or v.window_size % (v.patch_size * v.merge_size)
                     or v.window_size <= 0):
        raise LlmarchError(f"vision window_size {v.window_size} must be a positive multiple of patch_size x "
                           f"merge_size ({v.patch_size * v.merge_size})")
    if windowed and any(not isinstance(i, int) or not 0 <= i < v.n_layers for i in v.full_layers):
        raise LlmarchError(f"vision full_layers {v.full_layers} must be block indices in [0, {v.n_layers})")
    return v
