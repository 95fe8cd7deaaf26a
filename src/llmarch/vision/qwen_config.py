"""The vision part of a ModelConfig for Qwen2-VL's, Qwen2.5-VL's and Qwen3-VL's towers (`ModelConfig.vision` with tower
'qwen_vl'): a ViT over images of any size, each cut into temporal_patch_size x patch_size x patch_size patches rotated
by their (row, column) and merged merge_size x merge_size into one text token (Wang et al. 2024, "Qwen2-VL", \u00a72.1;
Bai et al. 2025, "Qwen2.5-VL", \u00a72.1; Qwen3-VL adds learned positions and DeepStack; GLM-4.1V's, GLM-4.5V's
and GLM-4.6V's (Hong et al. 2025, "GLM-4.1V-Thinking", \u00a72) add an RMSNorm after the patch embedding, learned
positions resampled bicubically, an RMSNorm after the blocks and a downsampling convolution before a gated merger,
their blocks without biases but perhaps on qkv). A sibling of config.py's
VisionConfig rather than more fields of it: that one is a fixed-size ViT (image_size, positions of that size, a class
token, hidden-state selection, a projector kind), none of which this tower has, and what this one has (merging, windows,
gated MLPs) none of those towers use. Validated here, before anything is built; nothing of llmarch's config is
imported."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import LlmarchError
from .fields import check_numbers, check_positive, check_switches, check_token_id, read_fields

TOWER = "qwen_vl"  # ModelConfig.vision's `tower` for this config
RESAMPLES = ("bilinear", "bicubic")  # grid_positions' resampling: Qwen3-VL's, GLM-4V's
MERGERS = ("mlp", "gated")  # Qwen-VL's norm, fc1, GELU, fc2; GLM-4V's downsample convolution and gated MLP
# Qwen2-VL's fc1, QuickGELU, fc2; Qwen2.5-VL's gated SwiGLU; Qwen3-VL's fc1, tanh-GELU, fc2; all with biases
FFNS = ("quick_gelu", "swiglu", "gelu_tanh")
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
    patch_bias: bool = False  # the patch convolution's bias (Qwen3-VL's)
    norm_eps: float = 1e-6  # the blocks' norms' (transformers hard-codes Qwen's; GLM-4V's config gives rms_norm_eps)
    bias: bool = True  # biases on the blocks' attention output and MLP (GLM-4V's have none)
    qkv_bias: bool = True  # biases on q, k, v (GLM-4V's attention_bias)
    # how grid_positions' table is resampled to each image's grid: 'bilinear' with corners aligned (Qwen3-VL's
    # gather), 'bicubic' at the patches' centres with the border repeated (GLM-4V's F.grid_sample)
    positions_resample: str = "bilinear"
    patch_norm: bool = False  # an RMSNorm on the patch embeddings, before the positions (GLM-4V's post_conv_layernorm)
    post_norm: bool = False  # an RMSNorm after the last block (GLM-4V's post_layernorm)
    # 'mlp': Qwen-VL's PatchMerger (qwen_merger.py); 'gated': GLM-4V's, each merge group convolved to out_width,
    # then proj, LayerNorm, GELU and a SwiGLU MLP of merger_hidden
    merger: str = "mlp"
    merger_hidden: int | None = None
    # Qwen3-VL: a learned square table of grid_positions position embeddings, resampled (bilinear, corners aligned) to
    # each image's rows x columns of patches and added to the patch embeddings; None: none (Qwen2-VL, Qwen2.5-VL)
    grid_positions: int | None = None
    # Qwen3-VL's DeepStack (Meng et al. 2024): the hidden states after each of these blocks merged by a merger of their
    # own (norm after the merge) and added to the image tokens' hidden states after the text model's first blocks,
    # the k-th after block k; None: none
    deepstack_layers: list | None = None
    # videos (qwen_inputs.py): <|video_pad|>, each of its positions one merged feature of a video; None: no videos
    video_token_id: int | None = None
    # Qwen2.5-VL (Bai et al. 2025, \u00a72.1, absolute time encoding): a video's temporal positions step by
    # tokens_per_second x its second_per_grid_ts per temporal patch (floored), not by 1; None: by 1
    tokens_per_second: float | None = None
    # Qwen3-VL: each temporal patch of a video is a run of its own, after its timestamp text ("<1.0 seconds>"), and
    # is placed as a one-frame video (transformers' get_rope_index splits video_grid_thw by frames)
    frames_apart: bool = False

    @property
    def head_dim(self) -> int:
        return self.width // self.n_heads

    @property
    def patch_dim(self) -> int:
        """The length of one flattened patch in pixel_values: channels x frames x patch x patch."""
        return self.channels * self.temporal_patch_size * self.patch_size ** 2

    def image_tokens(self, images: dict) -> list[int]:
        """The <|image_pad|> positions each image fills, of an image processor's output (preprocess.py: the model's
        image arguments): its t (h / merge_size) (w / merge_size) merged features, from its image_grid_thw row."""
        pixels, grid = images["pixel_values"], images.get("image_grid_thw")
        if grid is None or pixels.dim() != 2 or pixels.shape[1] != self.patch_dim:
            raise LlmarchError(f"the image processor makes pixel_values {tuple(pixels.shape)}"
                               f"{'' if grid is not None else ' without image_grid_thw'}; the tower reads (patches, "
                               f"{self.patch_dim}) with each image's grid (a Qwen2VLImageProcessor's)")
        return [t * h * w // self.merge_size ** 2 for t, h, w in grid.tolist()]


def is_qwen(data: dict | None) -> bool:
    return data is not None and data.get("tower") == TOWER


def qwen_vision_config(data: dict) -> QwenVisionConfig:
    """ModelConfig.vision's dict as a QwenVisionConfig, every field checked; an unknown field is an error."""
    v = read_fields(QwenVisionConfig, data, "qwen_vl vision", lists=("full_layers", "deepstack_layers"))
    check_token_id(v.image_token_id)
    if v.video_token_id is not None:
        check_token_id(v.video_token_id, "video_token_id")
    check_numbers(v, ("norm_eps",) if v.tokens_per_second is None else ("tokens_per_second", "norm_eps"))
    check_positive(v, ("width", "n_layers", "n_heads", "ffn_hidden", "out_width", "channels", "patch_size",
                       "temporal_patch_size", "merge_size"))
    if v.width % v.n_heads or v.head_dim % 4:
        raise LlmarchError(f"vision width {v.width} must split into {v.n_heads} heads of a multiple of 4 dims "
                           "(a quarter of each head turns by the row, a quarter by the column)")
    if v.ffn not in FFNS or v.norm not in NORMS:
        raise LlmarchError(f"vision ffn {v.ffn!r}, norm {v.norm!r}: ffns are {', '.join(FFNS)}; norms "
                           f"{', '.join(NORMS)}")
    if v.positions_resample not in RESAMPLES or v.merger not in MERGERS:
        raise LlmarchError(f"vision positions_resample {v.positions_resample!r}, merger {v.merger!r}: resamplings are "
                           f"{', '.join(RESAMPLES)}; mergers {', '.join(MERGERS)}")
    if (v.merger == "gated") != (v.merger_hidden is not None):
        raise LlmarchError("vision merger 'gated' and merger_hidden go together (GLM-4V's gated merger)")
    if v.merger_hidden is not None:
        check_positive(v, ("merger_hidden",))
    check_switches(v, ("bias", "qkv_bias", "patch_norm", "post_norm"))  # GLM-4V's
    windowed = v.window_size is not None
    if windowed != (v.full_layers is not None):
        raise LlmarchError("vision window_size and full_layers go together (Qwen2.5-VL's window attention)")
    if windowed and (not isinstance(v.window_size, int) or v.window_size % (v.patch_size * v.merge_size)
                     or v.window_size <= 0):
        raise LlmarchError(f"vision window_size {v.window_size} must be a positive multiple of patch_size x "
                           f"merge_size ({v.patch_size * v.merge_size})")
    for name in ("full_layers", "deepstack_layers"):
        layers = getattr(v, name)
        if layers is not None and any(not isinstance(i, int) or not 0 <= i < v.n_layers for i in layers):
            raise LlmarchError(f"vision {name} {layers} must be block indices in [0, {v.n_layers})")
    side = int(round((v.grid_positions or 0) ** 0.5))
    if v.grid_positions is not None and (not isinstance(v.grid_positions, int) or side * side != v.grid_positions
                                         or side < 2):
        raise LlmarchError(f"vision grid_positions {v.grid_positions} must be a square table (side >= 2)")
    if windowed and v.deepstack_layers is not None:
        raise LlmarchError("vision deepstack_layers with windows: no checkpoint has both (their features would need "
                           "the windows' order undone)")
    for name in ("patch_bias", "frames_apart"):
        if not isinstance(getattr(v, name), bool):
            raise LlmarchError(f"vision {name} must be true or false, got {getattr(v, name)!r}")
    return v
