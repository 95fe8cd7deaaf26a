"""Hyper-connections (Zhu et al. 2024, "Hyper-Connections", ICLR 2025; hyper_connection): the residual stream widened
to n = hc_streams streams of d_model, x (B, T, n, d). Around each sublayer f (attention, FFN) one HyperConnection
computes from the flattened, RMS-normalised streams h = x / rms(x) (over all n * d, no gain) three per-token maps:
    pre  = sigmoid(a_pre  * (h W_pre)  + b_pre) + eps                (n,)    the sublayer's input, sum_j pre_j x_j
    post = g * sigmoid(a_post * (h W_post) + b_post)                 (n,)    its output's gain into each stream
    x'_k = post_k f(sum_j pre_j x_j) + sum_j comb_jk x_j             the new streams
- mhc: DeepSeek-V4's manifold-constrained hyper-connections (DeepSeek-AI 2026, §2.2; Xie et al. 2026): comb =
  softmax(a_comb * (h W_comb) + b_comb) + eps per row, projected towards the doubly stochastic matrices by
  hc_sinkhorn_iters Sinkhorn-Knopp steps (columns, then rows and columns again), so the mix neither grows nor
  shrinks the streams; g = hc_post_gain (2);
- ihc: HY-V4's independent hyper-connections: no comb (each stream keeps itself, comb = I), post + eps;
- gated: Qwen4-Exp's gated residual (hc_count; GatedHyperConnection below), whose gate norms the sublayer's input.
The streams start as n copies of the token embedding; after the last block a head merges them (HyperHead: sum_j
pre_j x_j with pre = sigmoid(a * (h W) + b) + eps, before the final norm). The maps are computed in fp32, as
transformers does. W, b, a are held as `fn`, `bias`, `scale` (transformers' fn, base, scale; rows: pre, post, then
comb). A kind is a module forward(x) -> (the sublayer's input, expand), with `norms_input` (its mix is the
sublayer's normed input: the block has no ln1, ln2) and `head(cfg)` (the module merging the streams)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LlmarchError
from ..registry import Registry
from .linear import Linear
from .norms import rms_normalize

HYPER_CONNECTIONS: Registry = Registry("hyper_connection")


def check(cfg) -> None:
    """hyper_connection and its fields: a known kind, at least two streams, in a sequential pre-norm decoder."""
    if cfg.hc_side_by_side != (cfg.hyper_connection == "reversible"):
        raise LlmarchError(f"hc_side_by_side={cfg.hc_side_by_side} and hyper_connection={cfg.hyper_connection!r}: "
                           "the reversible streams are read side by side, and only they")
    if cfg.hyper_connection == "reversible" and cfg.hc_streams != 2:
        raise LlmarchError(f"hyper_connection 'reversible' has two streams: hc_streams must be 2, got {cfg.hc_streams}")
    if cfg.reversible_backward and (cfg.hyper_connection != "reversible" or cfg.recurrence != "none"):
        raise LlmarchError(f"reversible_backward recomputes the inputs of reversible blocks run once each in order: it "
                           f"needs hyper_connection 'reversible' and no recurrence, got {cfg.hyper_connection!r} and "
                           f"{cfg.recurrence!r}")
    if cfg.hyper_connection == "none":
        return
    HYPER_CONNECTIONS[cfg.hyper_connection]  # a one-line error naming the kinds
    if cfg.hc_streams < 2 or cfg.hc_sinkhorn_iters < 1 or cfg.hc_eps < 0 or cfg.hc_rank < 1:
        raise LlmarchError(f"hyper_connection needs hc_streams >= 2, hc_sinkhorn_iters >= 1, hc_eps >= 0 and hc_rank "
                           f">= 1, got {cfg.hc_streams}, {cfg.hc_sinkhorn_iters}, {cfg.hc_eps} and {cfg.hc_rank}")
    if cfg.hyper_connection == "gated" and cfg.norm not in ("rmsnorm", "rmsnorm_offset"):
        raise LlmarchError(f"hyper_connection 'gated' norms with the model's RMSNorm: norm must be rmsnorm or "
                           f"rmsnorm_offset, got {cfg.norm!r}")
    if (cfg.block != "sequential" or cfg.norm_placement != "pre" or cfg.n_decoder_layers or cfg.altup_streams > 1
            or cfg.laurel_rank or cfg.moe_shortcut or cfg.ple_dim or cfg.layer_scalar or cfg.side_conv
            or cfg.residual_multiplier != 1.0 or cfg.residual_alpha != 1.0 or cfg.ffn == "none"
            or cfg.mixer == "none"):
        raise LlmarchError("hyper_connection needs a sequential pre-norm decoder-only stack with a mixer and an FFN, "
                           "without AltUp, LAuReL, moe_shortcut, per-layer inputs, layer_scalar, side_conv or "
                           "residual multipliers")


def streams(x: torch.Tensor, n: int) -> torch.Tensor:
    """(B, T, d) -> (B, T, n, d): n copies of the token embedding, the streams the blocks start from."""
    return x.unsqueeze(2).expand(-1, -1, n, -1).contiguous()


def _normed_flat(x: torch.Tensor, eps: float) -> torch.Tensor:
    """x (B, T, n, d) -> (B, T, n*d) in fp32 over its RMS (no gain)."""
    return rms_normalize(x.flatten(2).float(), eps)


class HyperConnection(nn.Module):
    """One sublayer's maps (module docstring). forward(x) -> (the sublayer's input (B, T, d), and a function taking
    its output y (B, T, d) to the new streams (B, T, n, d))."""

    mixes = True  # whether the streams are mixed by a learned comb matrix
    norms_input = False  # the block norms the sublayer's input itself (ln1, ln2)

    @staticmethod
    def head(cfg) -> nn.Module:
        return HyperHead(cfg)

    def __init__(self, cfg):
        super().__init__()
        n = self.n = cfg.hc_streams
        rows = 2 * n + (n * n if self.mixes else 0)
        self.fn = nn.Parameter(torch.empty(rows, n * cfg.d_model))
        self.bias = nn.Parameter(torch.zeros(rows))
        self.scale = nn.Parameter(torch.ones(3 if self.mixes else 2))
        self.eps, self.norm_eps, self.gain = cfg.hc_eps, cfg.norm_eps, cfg.hc_post_gain
        self.iters = cfg.hc_sinkhorn_iters

    def _post(self, logits: torch.Tensor) -> torch.Tensor:
        return self.gain * torch.sigmoid(logits)

    def _comb(self, logits: torch.Tensor) -> torch.Tensor | None:
        return None

    def forward(self, x: torch.Tensor):  # x (B, T, n, d)
        n = self.n
        maps = F.linear(_normed_flat(x, self.norm_eps), self.fn.float())  # (B, T, rows)
        scale, base = self.scale.float(), self.bias.float()
        pre = torch.sigmoid(maps[..., :n] * scale[0] + base[:n]) + self.eps  # (B, T, n)
        post = self._post(maps[..., n:2 * n] * scale[1] + base[n:2 * n])  # (B, T, n)
        comb = self._comb((maps[..., 2 * n:] * scale[-1] + base[2 * n:]).unflatten(-1, (n, n))) if self.mixes else None
        collapsed = (pre.unsqueeze(-1) * x).sum(dim=2).to(x.dtype)

        def expand(y: torch.Tensor) -> torch.Tensor:
            out = post.to(x.dtype).unsqueeze(-1) * y.unsqueeze(-2)  # (B, T, n, d)
            if comb is None:
                return out + x
            return out + comb.to(x.dtype).transpose(-1, -2) @ x  # x'_k += sum_j comb_jk x_j

        return collapsed, expand


@HYPER_CONNECTIONS.register("mhc")
class ManifoldHyperConnection(HyperConnection):
    """DeepSeek-V4's mHC: comb made doubly stochastic by Sinkhorn-Knopp (§2.2, transformers' order of steps)."""

    def _comb(self, logits: torch.Tensor) -> torch.Tensor:
        eps = self.eps
        comb = logits.softmax(dim=-1) + eps
        comb = comb / (comb.sum(dim=-2, keepdim=True) + eps)
        for _ in range(self.iters - 1):
            comb = comb / (comb.sum(dim=-1, keepdim=True) + eps)
            comb = comb / (comb.sum(dim=-2, keepdim=True) + eps)
        return comb


@HYPER_CONNECTIONS.register("ihc")
class IndependentHyperConnection(HyperConnection):
    """HY-V4's iHC: no stream mixing; post = g sigmoid(.) + eps."""

    mixes = False

    def _post(self, logits: torch.Tensor) -> torch.Tensor:
        return self.gain * torch.sigmoid(logits) + self.eps


class HyperHead(nn.Module):
    """The n streams merged into one after the last block: sum_j pre_j x_j (transformers' hc_head)."""

    def __init__(self, cfg):
        super().__init__()
        n = cfg.hc_streams
        self.fn = nn.Parameter(torch.empty(n, n * cfg.d_model))
        self.bias = nn.Parameter(torch.zeros(n))
        self.scale = nn.Parameter(torch.ones(1))
        self.eps, self.norm_eps = cfg.hc_eps, cfg.norm_eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, n, d) -> (B, T, d)
        maps = F.linear(_normed_flat(x, self.norm_eps), self.fn.float())
        pre = torch.sigmoid(maps * self.scale.float() + self.bias.float()) + self.eps
        return (pre.unsqueeze(-1) * x).sum(dim=2).to(x.dtype)


@HYPER_CONNECTIONS.register("gated")
class GatedHyperConnection(nn.Module):
    """Qwen4-Exp's gated residual (hc_count; after Zhu et al. 2025, §2): before each sublayer a gate reads the n
    streams, each RMS-normed on its own with one gain per channel of the n·d (zero-centred for rmsnorm_offset):
        u = [x_k / rms(x_k)]_k · g                                        (B, T, n·d)
        a = sigmoid(W_up · silu(W_down · u / n))                          W_down of rank hc_rank
        h = mean_k(a_k ⊙ u_k)                                             the sublayer's input, already normed
        w = 2 sigmoid(W_inject · u / n)                                   one weight per stream
        x_k += w_k · f(h)                                                 every stream gains the output
    The head is the same gate without the injection (h alone), in place of a final norm."""

    norms_input = True

    def __init__(self, cfg, inject: bool = True):
        super().__init__()
        n, d = cfg.hc_streams, cfg.d_model
        self.streams, self.eps, self.offset = n, cfg.norm_eps, cfg.norm == "rmsnorm_offset"
        self.norm = nn.Parameter(torch.zeros(n * d) if self.offset else torch.ones(n * d))  # g over the n·d
        self.down = Linear(n * d, cfg.hc_rank, bias=False)
        self.up = Linear(cfg.hc_rank, n * d, bias=False)
        self.inject = Linear(n * d, n, bias=False) if inject else None

    @staticmethod
    def head(cfg) -> nn.Module:
        return GatedHead(cfg)

    def mix(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, T, n, d) -> h (B, T, d), w (B, T, n) (None without the injection)."""
        g = self.norm.float()
        u = (rms_normalize(x.float(), self.eps).flatten(-2) * (1.0 + g if self.offset else g)).type_as(x)
        a = torch.sigmoid(self.up(F.silu(self.down(u) / self.streams)))
        h = (a * u).unflatten(-1, (self.streams, -1)).mean(dim=-2)
        inject = self._modules.get("inject")  # None (in __dict__) for the head
        return h, None if inject is None else 2 * torch.sigmoid(inject(u) / self.streams)

    def forward(self, x: torch.Tensor):
        h, w = self.mix(x)
        return h, lambda y: x + y.unsqueeze(-2) * w.unsqueeze(-1)


class GatedHead(GatedHyperConnection):
    """The gated streams merged after the last block: the gate's h without the injection."""

    def __init__(self, cfg):
        super().__init__(cfg, inject=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(x)[0]
