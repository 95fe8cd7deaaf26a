"""Projectors from the vision tower's features into the text model's width, chosen by VisionConfig.projector."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import LlmarchError
from ..layers.ffn import ACTIVATIONS
from ..layers.linear import Linear
from ..layers.norms import LayerNorm, OffsetRMSNorm, PlainRMSNorm
from ..registry import Registry
from .config import VisionConfig
from .perceiver import PerceiverProjector
from .query_attention import QueryCrossAttention

PROJECTORS: Registry = Registry("vision projector")


@PROJECTORS.register("mlp")
class MLPProjector(nn.Module):
    """LLaVA-1.5's two-layer MLP (Liu et al. 2023, "Improved Baselines with Visual Instruction Tuning", §3.2):
    W2 act(W1 f + b1) + b2, W1 projector_hidden wide (None: the text width)."""

    def __init__(self, v: VisionConfig, d_model: int):
        super().__init__()
        hidden = v.projector_hidden or d_model  # LFM2-VL's projector_hidden_size; LLaVA's is the text width
        self.fc1 = Linear(v.feature_width, hidden, bias=v.projector_bias)
        self.act = ACTIVATIONS[v.projector_act]
        self.fc2 = Linear(hidden, d_model, bias=v.projector_bias)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(f)))


@PROJECTORS.register("linear")
class LinearProjector(nn.Module):
    """PaliGemma's one linear map W f + b (Beyer et al. 2024, "PaliGemma", §3.1)."""

    def __init__(self, v: VisionConfig, d_model: int):
        super().__init__()
        self.proj = Linear(v.feature_width, d_model, bias=v.projector_bias)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.proj(f)


@PROJECTORS.register("linear_norm")
class LinearNormProjector(nn.Module):
    """GIT's projection (Wang et al. 2022, §2.1: a linear layer and a LayerNorm): LN(W f + b), the LayerNorm of the
    tower's eps."""

    def __init__(self, v: VisionConfig, d_model: int):
        super().__init__()
        self.proj = Linear(v.feature_width, d_model, bias=v.projector_bias)
        self.norm = LayerNorm(d_model, eps=v.norm_eps)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(f))


@PROJECTORS.register("rms_linear")
class RMSLinearProjector(nn.Module):
    """Gemma 4's multimodal embedder (transformers' Gemma4MultimodalEmbedder): an RMSNorm without a gain at
    projector_eps, then W f without bias."""

    def __init__(self, v: VisionConfig, d_model: int):
        super().__init__()
        self.norm = PlainRMSNorm(v.feature_width, eps=v.projector_eps)
        self.proj = Linear(v.feature_width, d_model, bias=False)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(f))


@PROJECTORS.register("pixel_shuffle")
class PixelShuffleProjector(nn.Module):
    """Idefics3's connector (Lauren\u00e7on et al. 2024, "Building and better understanding vision-language models",
    \u00a72.2): the square grid of patch features space-to-depth by s = shuffle_factor, each s x s block one feature of
    s^2 times the width (in transformers' order: a row's s neighbours side by side, then the block's s rows), then
    W f without bias."""

    def __init__(self, v: VisionConfig, d_model: int):
        super().__init__()
        self.s = v.shuffle_factor
        self.proj = Linear(v.feature_width, d_model, bias=v.projector_bias)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.proj(pixel_shuffle(f, self.s))


def pixel_shuffle(f: torch.Tensor, s: int, rows: int | None = None) -> torch.Tensor:
    """(N, rows cols, C) -> (N, rows cols / s^2, s^2 C): each s x s block of the grid (rows x cols, row-major; rows
    None: a square) one feature, in transformers' order (Idefics3's, Aya Vision's pixel_shuffle and LFM2-VL's
    pixel_unshuffle: a row's s neighbours side by side, then the block's s rows)."""
    n, t, c = f.shape
    rows = int(t ** 0.5) if rows is None else rows
    cols = t // rows
    if rows * cols != t or rows % s or cols % s:
        raise LlmarchError(f"pixel_shuffle needs a grid of patches whose sides divide by {s}, got {t} patches in "
                           f"{rows} rows")
    x = f.reshape(n, rows, cols // s, s * c).transpose(1, 2)  # (N, cols/s, rows, s C)
    x = x.reshape(n, cols // s, rows // s, s * s * c).transpose(1, 2)  # (N, rows/s, cols/s, s^2 C)
    return x.reshape(n, t // (s * s), s * s * c)


@PROJECTORS.register("pool_norm_linear")
class PoolNormLinearProjector(nn.Module):
    """Gemma 3's projector (Gemma Team 2025, "Gemma 3 Technical Report", §2.1: the image embeddings condensed into
    256 vectors; transformers' Gemma3MultiModalProjector): the tower's patch grid average-pooled to pool_tokens
    features, an RMSNorm with Gemma's (1 + g) gain at the tower's eps, then W f without bias."""

    def __init__(self, v: VisionConfig, d_model: int):
        super().__init__()
        self.grid = v.image_size // v.patch_size
        self.kernel = self.grid // round(v.pool_tokens ** 0.5)
        self.norm = OffsetRMSNorm(v.feature_width, eps=v.norm_eps)
        self.proj = Linear(v.feature_width, d_model, bias=v.projector_bias)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        N, P, C = f.shape
        grid = f.transpose(1, 2).reshape(N, C, self.grid, self.grid)  # row-major patches, as the tower lays them
        pooled = nn.functional.avg_pool2d(grid, self.kernel).flatten(2).transpose(1, 2)  # (N, pool_tokens, C)
        return self.proj(self.norm(pooled))


@PROJECTORS.register("norm_mlp")
class NormMLPProjector(MLPProjector):
    """VipLLaVA's projector (Cai et al. 2024, "ViP-LLaVA", \u00a73.2; transformers' VipLlavaMultiModalProjector): a
    LayerNorm over the concatenated feature layers, then LLaVA's MLP, W2 act(W1 LN(f) + b1) + b2."""

    def __init__(self, v: VisionConfig, d_model: int):
        super().__init__(v, d_model)
        self.norm = LayerNorm(v.feature_width, eps=v.projector_eps)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return super().forward(self.norm(f))


@PROJECTORS.register("pixel_shuffle_mlp")
class PixelShuffleMLPProjector(NormMLPProjector):
    """InternVL's projector (Chen et al. 2024, "How Far Are We to GPT-4V?", \u00a73.1: pixel shuffle to a quarter of
    the visual tokens, then an MLP; transformers' InternVLModel.pixel_shuffle and InternVLMultiModalProjector): the
    patch grid space-to-depth by shuffle_factor in the same order as Idefics3's (downsample_ratio 0.5 is factor 2),
    then norm_mlp's LayerNorm (nn.LayerNorm's eps 1e-5, projector_eps's default) and LLaVA's MLP."""

    def __init__(self, v: VisionConfig, d_model: int):
        super().__init__(v, d_model)
        self.s = v.shuffle_factor

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return super().forward(pixel_shuffle(f, self.s))


@PROJECTORS.register("pixel_shuffle_swiglu")
class PixelShuffleSwiGLUProjector(nn.Module):
    """Cohere2 Vision's projector (transformers' Cohere2VisionMultiModalProjector): the patch grid pixel-shuffled by
    s = shuffle_factor (as Idefics3's), then a SwiGLU (Shazeer 2020) whose first map W1 f + b1 is split in halves
    [x, g], W2 (x \u00b7 silu(g)) + b2."""

    def __init__(self, v: VisionConfig, d_model: int):
        super().__init__()
        self.s = v.shuffle_factor
        self.fc1 = Linear(v.feature_width, v.projector_hidden, bias=v.projector_bias)
        self.fc2 = Linear(v.projector_hidden // 2, d_model, bias=v.projector_bias)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        x, gate = self.fc1(self.normed(pixel_shuffle(f, self.s))).chunk(2, dim=-1)
        return self.fc2(nn.functional.silu(gate) * x)

    def normed(self, f: torch.Tensor) -> torch.Tensor:
        return f


@PROJECTORS.register("pixel_shuffle_norm_swiglu")
class PixelShuffleNormSwiGLUProjector(PixelShuffleSwiGLUProjector):
    """Aya Vision's projector (Dash et al. 2025, "Aya Vision"; transformers' AyaVisionMultiModalProjector): Cohere2
    Vision's with a LayerNorm (projector_eps) on the shuffled features before the SwiGLU."""

    def __init__(self, v: VisionConfig, d_model: int):
        super().__init__(v, d_model)
        self.norm = LayerNorm(v.feature_width, eps=v.projector_eps)

    def normed(self, f: torch.Tensor) -> torch.Tensor:
        return self.norm(f)


@PROJECTORS.register("pixel_shuffle_mlp2")
class PixelShuffleMLP2Projector(MLPProjector):
    """Llama 4's vision adapter and projector (Meta 2025, "The Llama 4 herd"; transformers'
    Llama4VisionPixelShuffleMLP, Llama4VisionMLP2 and Llama4MultiModalProjector): the patch grid space-to-depth by
    s = shuffle_factor (Idefics3's order), LLaVA's MLP of projector_hidden width and output with the activation after
    both of its layers, act(W2 act(W1 f)), then W f into the text width; no biases (projector_bias false)."""

    def __init__(self, v: VisionConfig, d_model: int):
        hidden = v.projector_hidden or d_model
        super().__init__(v, hidden)
        self.s = v.shuffle_factor
        self.proj = Linear(hidden, d_model, bias=v.projector_bias)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.proj(self.act(super().forward(pixel_shuffle(f, self.s))))


PROJECTORS.register("perceiver")(PerceiverProjector)  # Idefics2's (perceiver.py)


@PROJECTORS.register("cross_attention")
class CrossAttentionProjector(NormMLPProjector):
    """Aria's projector (transformers' AriaProjector): learned queries cross-attend to the patch features
    (query_attention.py), then norm_mlp's LayerNorm and MLP (Aria's feed_forward: no biases, tanh-GELU, the text
    width), W2 act(W1 LN(x)) for x the attention's output."""
    reads_patch_mask = True  # the padded patches are masked out as keys

    def __init__(self, v: VisionConfig, d_model: int):
        super().__init__(v, d_model)
        self.cross = QueryCrossAttention(v)

    def forward(self, f: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(self.cross(f, real))
