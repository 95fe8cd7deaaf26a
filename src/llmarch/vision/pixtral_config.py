"""The vision part of a ModelConfig for Pixtral's tower and Mistral 3's projector (`ModelConfig.vision` with tower
'pixtral'; Mistral AI 2024, "Pixtral 12B", \u00a72.1; Mistral Small 3.1/3.2): a ViT over images of any size in
patch_size patches, 2-D RoPE over each patch's (row, column), attention within each image, then an RMSNorm, a
merge_size x merge_size patch merger and a two-layer MLP into the text model's width. A sibling of qwen_config.py
rather than more fields of it: its RoPE frequencies, merge order and projector are its own, and it has none of
Qwen-VL's frames, windows, biases or M-RoPE. Validated here, before anything is built."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import LlmarchError
from .fields import check_numbers, check_positive, check_switches, check_token_id, read_fields

TOWER = "pixtral"  # ModelConfig.vision's `tower` for this config
FFNS = ("swiglu", "geglu")  # the blocks' gated MLP: act(gate) * up with hidden_act silu or (exact) gelu
PROJECTOR_ACTS = ("gelu", "silu", "gelu_tanh")


@dataclass(frozen=True)
class PixtralVisionConfig:
    tower: str  # TOWER
    image_token_id: int  # [IMG]: each of its positions takes one merged feature
    width: int  # the tower's residual width
    n_layers: int
    n_heads: int
    ffn_hidden: int
    out_width: int  # the projector's output, the text model's width
    ffn: str = "swiglu"
    channels: int = 3
    patch_size: int = 14
    image_size: int = 1540  # the longest side the tower was trained for (the processor's longest_edge); kept
    rope_theta: float = 10000.0  # the tower's 2-D RoPE base
    merge_size: int = 2  # merge_size x merge_size neighbouring patches -> one text token (spatial_merge_size)
    projector_act: str = "gelu"  # the projector's activation between its two linear maps
    projector_bias: bool = False  # the projector's linear biases (multimodal_projector_bias)
    projector_eps: float = 1e-5  # the projector's RMSNorm eps (transformers takes the text model's rms_norm_eps)

    @property
    def head_dim(self) -> int:
        return self.width // self.n_heads


def is_pixtral(data: dict | None) -> bool:
    return data is not None and data.get("tower") == TOWER


def pixtral_vision_config(data: dict) -> PixtralVisionConfig:
    """ModelConfig.vision's dict as a PixtralVisionConfig, every field checked; an unknown field is an error."""
    v = read_fields(PixtralVisionConfig, data, "pixtral vision")
    check_token_id(v.image_token_id)
    check_positive(v, ("width", "n_layers", "n_heads", "ffn_hidden", "out_width", "channels", "patch_size",
                       "image_size", "merge_size"))
    if v.width % v.n_heads or v.head_dim % 4:
        raise LlmarchError(f"vision width {v.width} must split into {v.n_heads} heads of a multiple of 4 dims "
                           "(a quarter of each head's pairs turns by the row, a quarter by the column)")
    if v.ffn not in FFNS or v.projector_act not in PROJECTOR_ACTS:
        raise LlmarchError(f"vision ffn {v.ffn!r}, projector_act {v.projector_act!r}: ffns are {', '.join(FFNS)}; "
                           f"projector activations {', '.join(PROJECTOR_ACTS)}")
    check_switches(v, ("projector_bias",))
    check_numbers(v, ("rope_theta", "projector_eps"))
    return v
