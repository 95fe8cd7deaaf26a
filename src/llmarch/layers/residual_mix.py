"""How a sublayer's output y joins the residual stream x, where it is not the plain x + y (residual_mix; block.py
calls mix(y, x) after the sublayer's post-norm, if any, and its dropout):
- depth_scaled (Beam, reflection/Beam-1.0): the k-th residual add of the stack (k = 2(i + 1) for layer i's mixer,
  2(i + 1) + 1 for its FFN) keeps the stream's scale, x sqrt((k - 1) / k) + y / sqrt(k): the stream after the k-th
  add is (e + y_2 + ... + y_k) / sqrt(k), e the embeddings, so independent outputs of one scale sum to that scale
  however deep the stack (transformers' depth_scaled_residual_add in modeling_beam.py);
- gated (Ergo, Amazon-FMR/Ergo): a learned weight w per channel, sigmoid(w) y + sqrt(1 + sigmoid(w))
  exp(-softplus(w) / 2) x; at w = 0, y / 2 + sqrt(3 / 4) x. The second factor equals sqrt((1 + s) (1 - s)) =
  sqrt(1 - s^2) for s = sigmoid(w), since exp(-softplus(w)) = 1 - s: the weights of unit-variance y and x then sum to
  unit variance, s^2 + (1 - s^2) = 1;
- scaled (Doge, SmallDoge; Shi et al. 2024, "Wonderful Matrices", arXiv 2412.11834): the stream times a learned gain
  per channel, g * x + y (g at 1: the plain add);
- layer_scale (CaiT's LayerScale, Touvron et al. 2021; InternViT's): the output times a learned gain per channel,
  x + g * y;
- tanh_gate (Llama 3.2 Vision's global vision encoder, MllamaVisionEncoderLayer's gate_attn and gate_ffn; the tanh
  gates of Flamingo, Alayrac et al. 2022, \u00a72.2): x + tanh(g) y, g one learned scalar;
- affine (ZAYA1's ResidualScaling): the output and the stream each shifted and scaled per channel before their sum,
  (y + b_y) * s_y + (x + b_x) * s_x (at init, zeros and ones, the plain add);
- ngpt (Dory, nvidia/NVIDIA-Nemotron-Labs-Dory1.0; Loshchilov et al. 2024, "nGPT", §2.2.2, eq. 10-11): the stream on
  the unit sphere moves towards the normalised output at a learned rate per channel, h + |a| (y - h) with h = norm(x),
  y the sublayer's output through its post-norm (sandwich blocks of norm 'l2': the sphere's projection, so h is the
  normed input the sublayer read). The rates a start at residual_rate_init (nGPT's alpha_init)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LlmarchError
from ..registry import Registry
from .norms import make_norm

RESIDUAL_MIXES: Registry = Registry("residual mix")


@RESIDUAL_MIXES.register("depth_scaled")
class DepthScaled(nn.Module):
    """x sqrt((k - 1) / k) + y / sqrt(k), k the add's index in the stack (two per layer, from 2); no parameters."""

    def __init__(self, cfg, layer: int, sublayer: int):
        super().__init__()
        k = 2 * (layer + 1) + sublayer
        self.y_scale, self.x_scale = 1.0 / math.sqrt(k), math.sqrt((k - 1) / k)

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return y * self.y_scale + x * self.x_scale


@RESIDUAL_MIXES.register("gated")
class GatedResidual(nn.Module):
    """sigmoid(w) y + sqrt(1 + sigmoid(w)) exp(-softplus(w) / 2) x, w a learned vector of d_model (fp32)."""

    def __init__(self, cfg, layer: int, sublayer: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(cfg.d_model))

    def init_ssm(self) -> None:
        """The stack's init hook (models/init.init_weights), which sets 1-D weights to ones: w back to 0."""
        nn.init.zeros_(self.weight)

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.float()
        s = w.sigmoid()
        return (s * y.float() + torch.sqrt(1.0 + s) * torch.exp(-0.5 * F.softplus(w)) * x.float()).to(x.dtype)


@RESIDUAL_MIXES.register("scaled")
class ScaledResidual(nn.Module):
    """g * x + y, g a learned gain per channel (ones at init)."""

    def __init__(self, cfg, layer: int, sublayer: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(cfg.d_model))

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.weight * x + y


@RESIDUAL_MIXES.register("layer_scale")
class LayerScale(nn.Module):
    """x + g * y, g a learned gain per channel of the sublayer's output (CaiT's LayerScale, Touvron et al. 2021,
    "Going deeper with Image Transformers", §2.1; InternViT's lambda_1 and lambda_2; ones at init: the plain add)."""

    def __init__(self, cfg, layer: int, sublayer: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(cfg.d_model))

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x + self.weight * y


@RESIDUAL_MIXES.register("tanh_gate")
class TanhGate(nn.Module):
    """x + tanh(g) * y, g a learned scalar (1 at init, by the stack's init of 1-D weights)."""

    def __init__(self, cfg, layer: int, sublayer: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x + self.weight.tanh() * y


@RESIDUAL_MIXES.register("affine")
class ResidualAffine(nn.Module):
    """(y + b_y) * s_y + (x + b_x) * s_x, four learned vectors of d_model."""

    def __init__(self, cfg, layer: int, sublayer: int):
        super().__init__()
        d = cfg.d_model
        self.hidden_scale, self.hidden_bias = nn.Parameter(torch.ones(d)), nn.Parameter(torch.zeros(d))
        self.residual_scale, self.residual_bias = nn.Parameter(torch.ones(d)), nn.Parameter(torch.zeros(d))

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return (y + self.hidden_bias) * self.hidden_scale + (x + self.residual_bias) * self.residual_scale


@RESIDUAL_MIXES.register("ngpt")
class SphereResidual(nn.Module):
    """h + |a| (y - h), h = norm(x), a a learned vector of d_model (the eigen learning rates)."""

    def __init__(self, cfg, layer: int, sublayer: int):
        super().__init__()
        self.start = cfg.residual_rate_init
        self.weight = nn.Parameter(torch.full((cfg.d_model,), cfg.residual_rate_init))
        self.norm = make_norm(cfg)

    def init_ssm(self) -> None:
        """The stack's init hook sets 1-D weights to ones: the rates back to residual_rate_init."""
        nn.init.constant_(self.weight, self.start)

    def forward(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        return h + self.weight.abs() * (y - h)


def make_residual_mix(cfg, layer: int, sublayer: int) -> nn.Module | None:
    """The residual mix of layer `layer`'s mixer (sublayer 0) or FFN (1); None: the plain add."""
    return None if cfg.residual_mix == "none" else RESIDUAL_MIXES[cfg.residual_mix](cfg, layer, sublayer)


def check_residual_mix(cfg) -> None:
    if cfg.residual_mix == "none":
        return
    if cfg.residual_mix not in RESIDUAL_MIXES:
        raise LlmarchError(f"unknown residual_mix {cfg.residual_mix!r}; choose one of: none, "
                           f"{', '.join(RESIDUAL_MIXES.names())}")
    if cfg.block != "sequential" or cfg.norm_placement not in ("pre", "sandwich") \
            or cfg.residual_alpha != 1.0 or cfg.laurel_rank or cfg.altup_streams > 1 \
            or cfg.hyper_connection != "none" or cfg.n_decoder_layers or cfg.moe_shortcut:
        raise LlmarchError(f"residual_mix={cfg.residual_mix!r} mixes the residual adds of sequential pre-norm or "
                           "sandwich blocks of a decoder-only or encoder-only stack (no residual_alpha,"
                           " LAuReL, AltUp, hyper-connections or moe_shortcut)")
    if cfg.residual_mix == "ngpt" and (cfg.norm != "l2" or cfg.norm_placement != "sandwich"):
        raise LlmarchError(f"residual_mix='ngpt' moves the stream along the unit sphere: it needs norm='l2' and "
                           f"sandwich norms, got norm={cfg.norm!r}, norm_placement={cfg.norm_placement!r}")
