"""Normalisation layers: LayerNorm (Ba et al. 2016) and RMSNorm (Zhang & Sennrich 2019), their variants, and
MobileBERT's NoNorm (an affine map in a norm's place)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry
from .linear import Linear

NORMS: Registry = Registry("norm")


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * g  (Zhang & Sennrich 2019, eq. 4), computed in fp32 as LLaMA does."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self._parameters["weight"]
        if x.dtype == torch.float32 and w.dtype == torch.float32:
            if x.device.type == "cpu" and not torch.is_grad_enabled():
                # torch's rms_norm is six ops on a CPU, layer_norm one fused kernel, and RMSNorm(x) is the first
                # half of LayerNorm([x, -x]): [x, -x] has mean 0 and variance mean(x^2). A one-token step runs
                # two norms per layer (training keeps rms_norm: this doubles the activation it would save)
                d = x.shape[-1]
                return torch.layer_norm(torch.cat((x, x.neg()), -1), (2 * d,), None, None, self.eps)[..., :d] * w
            return F.rms_norm(x, w.shape, w, self.eps)  # the same formula as one op: fewer dispatches
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return w * h.to(x.dtype)


def rms_normalize(x: torch.Tensor, eps: float) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) over the last dim in fp32, no gain (Gemma 4's value norm)."""
    h = x.float()
    return (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


class OffsetRMSNorm(RMSNorm):
    """Gemma's RMSNorm: the gain is stored as g - 1, y = x / rms(x) * (1 + g), all in fp32."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__(dim, eps)
        nn.init.zeros_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return (h * (1.0 + self.weight.float())).to(x.dtype)


class LayerNorm(nn.LayerNorm):
    """nn.LayerNorm (same parameters and state-dict names) calling the op directly: F.layer_norm's wrapper and
    nn.Module's attribute fallback for the weight and bias are a third of its time on a one-token step."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self._parameters
        return torch.layer_norm(x, self.normalized_shape, p["weight"], p["bias"], self.eps)


@NORMS.register("layernorm")
def layernorm(dim: int, eps: float, bias: bool) -> nn.Module:
    return LayerNorm(dim, eps=eps, bias=bias)


class PlainLayerNorm(nn.Module):
    """LayerNorm without a gain or bias, in fp32 (OLMo 1: Groeneveld et al. 2024, §2.1, "non-parametric layer
    norm"; transformers' OlmoLayerNorm)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.dim, self.eps = dim, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.layer_norm(x.float(), (self.dim,), None, None, self.eps).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}"


class PlainRMSNorm(nn.Module):
    """RMSNorm without a gain, in fp32: x / sqrt(mean(x^2) + eps) (Llama 4's QK-norm, transformers'
    Llama4TextL2Norm, which despite its name divides by the RMS, not the L2 norm)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.dim, self.eps = dim, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x.float(), (self.dim,), None, self.eps).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}"


class OffsetLayerNorm(LayerNorm):
    """Nemotron's LayerNorm1P: the gain stored as g - 1 (zero-centred, so weight decay pulls it towards 1),
    y = LN(x) * (1 + g) + b."""

    def __init__(self, dim: int, eps: float = 1e-5, bias: bool = True):
        super().__init__(dim, eps=eps, bias=bias)
        nn.init.zeros_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self._parameters
        return torch.layer_norm(x, self.normalized_shape, p["weight"] + 1.0, p["bias"], self.eps)


@NORMS.register("layernorm1p")
def layernorm1p(dim: int, eps: float, bias: bool) -> nn.Module:
    return OffsetLayerNorm(dim, eps=eps, bias=bias)


@NORMS.register("layernorm_plain")
def layernorm_plain(dim: int, eps: float, bias: bool) -> nn.Module:
    return PlainLayerNorm(dim, eps=eps)


@NORMS.register("rmsnorm_plain")
def rmsnorm_plain(dim: int, eps: float, bias: bool) -> nn.Module:
    """RMSNorm with no gain (nanochat's F.rms_norm(x, (d,)) everywhere: its norms store nothing)."""
    return PlainRMSNorm(dim, eps=eps)


@NORMS.register("rmsnorm")
def rmsnorm(dim: int, eps: float, bias: bool) -> nn.Module:
    return RMSNorm(dim, eps=eps)


class Affine(nn.Module):
    """An elementwise affine map without normalisation, y = x * g + b (MobileBERT's NoNorm: Sun et al. 2020, §4.2,
    "Operational Optimizations", which drops LayerNorm's mean and variance for speed)."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.ones(dim)), nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self._parameters
        return torch.addcmul(p["bias"], x, p["weight"])


@NORMS.register("affine")
def affine(dim: int, eps: float, bias: bool) -> nn.Module:
    return Affine(dim)


def make_norm(cfg, dim: int | None = None) -> nn.Module:
    return NORMS[cfg.norm](dim or cfg.d_model, cfg.norm_eps, cfg.norm_bias)


class L2Norm(nn.Module):
    """x / sqrt(sum(x^2) + eps), no gain, in fp32: the projection onto the unit sphere of nGPT (Loshchilov et al. 2024,
    "nGPT: Normalized Transformer with Representation Learning on the Hypersphere", §2), whose hidden states, queries,
    keys and sublayer outputs all have norm 1 rather than RMS 1 (Dory's DoryL2Norm)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.dim, self.eps = dim, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        return (h * torch.rsqrt(h.pow(2).sum(-1, keepdim=True) + self.eps)).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}"


@NORMS.register("l2")
def l2(dim: int, eps: float, bias: bool) -> nn.Module:
    return L2Norm(dim, eps=eps)


@NORMS.register("rmsnorm_offset")
def rmsnorm_offset(dim: int, eps: float, bias: bool) -> nn.Module:
    return OffsetRMSNorm(dim, eps=eps)


class PerHeadNorm(nn.Module):
    """A norm over each head's D channels with a gain of its own per head (StableLM-2-12B's qk_layernorm, a
    LayerNorm without bias for each head): `kind`'s normalisation without its gain, times weight (H, D), stored flat
    (H * D,), the heads' gains one after another, plus a bias laid out the same where `bias` (Chameleon's
    ChameleonLayerNorm). x (..., H, ...) with the heads on `axis`, D last."""

    def __init__(self, kind: str, heads: int, dim: int, eps: float, bias: bool = False):
        super().__init__()
        if kind not in ("layernorm", "rmsnorm"):
            from ..errors import LlmarchError

            raise LlmarchError(f"qk_norm='per_head' normalises as layernorm or rmsnorm, not norm={kind!r}")
        self.kind, self.heads, self.dim, self.eps = kind, heads, dim, eps
        self.weight = nn.Parameter(torch.ones(heads * dim))
        self.register_parameter("bias", nn.Parameter(torch.zeros(heads * dim)) if bias else None)

    def forward(self, x: torch.Tensor, axis: int) -> torch.Tensor:
        if self.kind == "layernorm":
            h = torch.layer_norm(x, (self.dim,), None, None, self.eps)
        else:
            h = F.rms_norm(x.float(), (self.dim,), None, self.eps).to(x.dtype)
        shape = (self.heads, *[1] * (x.dim() - 2 - axis), self.dim)
        h = h * self._parameters["weight"].view(shape)
        b = self._parameters["bias"]
        return h if b is None else h + b.view(shape)


class GatedNorm(nn.Module):
    """A norm followed by a low-rank gate on its own output (norm_gate_rank: A.X-K2's GatedRMSNorm, Megatron's
    GatedNormWrapper): y = norm(x), y * sigmoid(silu(y W_down) W_up), W_down (rank, d), W_up (d, rank); the gate
    lets each token scale each channel of what its sublayer reads."""

    def __init__(self, norm: nn.Module, dim: int, rank: int):
        super().__init__()
        self.norm = norm
        self.gate_down = Linear(dim, rank, bias=False)
        self.gate_up = Linear(rank, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x)
        sub = self._modules
        return (y * torch.sigmoid(sub["gate_up"](F.silu(sub["gate_down"](y))).float())).to(y.dtype)


def l2_clip(x: torch.Tensor, bound: float) -> torch.Tensor:
    """Each vector (last dim) scaled down to an L2 norm of at most `bound`, shorter ones unchanged, in fp32:
    x * min(bound / (|x| + 1e-6), 1) (Inkling 2's L2Clip)."""
    h = x.float()
    return (h * (bound / (torch.linalg.vector_norm(h, dim=-1, keepdim=True) + 1e-6)).clamp(max=1.0)).to(x.dtype)


class L2Clip(nn.Module):
    """l2_clip of each head's vectors, optionally after a learned gain per head and channel, weight (H, D) (Inkling
    2's ScaledL2Clip on queries and relative states; its keys have no gain). x (..., H, ...) with the heads on
    `axis`, D last."""

    def __init__(self, bound: float, heads: int = 0, dim: int = 0):
        super().__init__()
        self.bound = bound
        self.weight = nn.Parameter(torch.ones(heads, dim)) if heads else None

    def init_ssm(self) -> None:
        """The stack's init hook: the gains back to ones."""
        if self.weight is not None:
            nn.init.ones_(self.weight)

    def forward(self, x: torch.Tensor, axis: int = -2) -> torch.Tensor:
        if self.weight is None:
            return l2_clip(x, self.bound)
        axis = axis % x.dim()
        w = self.weight.float().view(self.weight.shape[0], *[1] * (x.dim() - 2 - axis), self.weight.shape[1])
        return l2_clip(x.float() * w, self.bound).to(x.dtype)
