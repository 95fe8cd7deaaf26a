"""MobileBERT's bottlenecked block (Sun et al. 2020, "MobileBERT: a Compact Task-Agnostic BERT for Resource-Limited
Devices", §3.1-3.3 and Fig. 1c) as one mixer: the block's input x (C wide) is projected down to an inner stream of
bottleneck_dim (b) on which attention and a stack of FFNs run, post-norm, then projected back up:

    h = n_in(x W_in)                                         (the input bottleneck, C -> b)
    h = n_attn(h + MHA(q, k from s; v from u) W_o)           (bottleneck_qkv: s, u = n_qk(x W_qk), x   shared_qk
                                                                                    = h, h              inner
                                                                                    = x, x              input)
    h = n_j(h + FFN_j(h))          j = 1 .. bottleneck_ffns  (the stacked FFNs, §3.3: more FFNs per block keep
                                                              the ratio of FFN to attention parameters of BERT)
    out = h W_out                                            (the output bottleneck, b -> C)

and the block adds and norms around it, post-norm: x = n(x + out), its ln1 (MobileBERT's output.bottleneck). The
mixer holds the block's FFNs (holds_ffn), of the config's kind at width b; its norms are the config's (MobileBERT's
NoNorm: the 'affine' norm). Attention is over every real token (bidirectional only). Shapes: B batch, T length,
C d_model, b bottleneck_dim, H heads, D head_dim."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import LlmarchError
from .attention import attention_setup, split_heads
from .ffn import FFNS, ffn_options
from .hooks import HookPoint
from .linear import Linear
from .mixer import MIXERS, Mixer
from .norms import make_norm

QKV_SOURCES = ("shared_qk", "inner", "input")


@MIXERS.register("bottleneck")
class BottleneckBlock(Mixer):
    residual_out = ("out_proj.weight",)
    bidirectional_only = True
    holds_ffn = True

    @classmethod
    def check(cls, cfg) -> None:
        if cfg.causal or cfg.n_decoder_layers:
            raise LlmarchError("mixer 'bottleneck' attends over every token: it needs a bidirectional encoder-only "
                               "stack (causal=False)")
        if cfg.bottleneck_dim <= 0 or cfg.bottleneck_ffns <= 0 or cfg.bottleneck_qkv not in QKV_SOURCES:
            raise LlmarchError(f"mixer 'bottleneck' needs a positive bottleneck_dim and bottleneck_ffns and "
                               f"bottleneck_qkv one of {', '.join(QKV_SOURCES)}, got {cfg.bottleneck_dim}, "
                               f"{cfg.bottleneck_ffns} and {cfg.bottleneck_qkv!r}")
        if cfg.norm_placement != "post" or cfg.block != "sequential" or cfg.attention != "full" \
                or cfg.positions not in ("none", "learned", "sinusoidal") or cfg.n_kv_heads != cfg.n_heads \
                or cfg.value_width != cfg.head_dim or cfg.n_experts or cfg.ffn == "none" or cfg.attn_softcap:
            raise LlmarchError("mixer 'bottleneck' is MobileBERT's post-norm block: sequential, full multi-head "
                               "attention with absolute positions (or none), values of head_dim, a dense FFN")

    @classmethod
    def score_dims(cls, cfg) -> int:
        return 2 * cfg.n_heads * cfg.head_dim

    def __init__(self, cfg, layer: int = 0):
        super().__init__()
        d, b = cfg.d_model, cfg.bottleneck_dim
        attention_setup(self, cfg)  # heads, head_dim, dropout, scale, kernel
        self.qkv_from = cfg.bottleneck_qkv
        self.in_proj, self.in_norm = Linear(d, b, bias=cfg.bias), make_norm(cfg, b)
        if self.qkv_from == "shared_qk":
            self.qk_proj, self.qk_norm = Linear(d, b, bias=cfg.bias), make_norm(cfg, b)
        a = self.n_heads * self.head_dim
        qk_in, v_in = {"shared_qk": (b, d), "inner": (b, b), "input": (d, d)}[self.qkv_from]
        self.q_proj, self.k_proj = Linear(qk_in, a, bias=cfg.qkv_bias), Linear(qk_in, a, bias=cfg.qkv_bias)
        self.v_proj = Linear(v_in, a, bias=cfg.qkv_bias)
        self.o_proj, self.attn_norm = Linear(a, b, bias=cfg.o_bias), make_norm(cfg, b)
        self.ffns = nn.ModuleList(FFNS[cfg.ffn](b, cfg.ffn_hidden, bias=cfg.bias, **ffn_options(cfg))
                                  for _ in range(cfg.bottleneck_ffns))
        self.ffn_norms = nn.ModuleList(make_norm(cfg, b) for _ in range(cfg.bottleneck_ffns))
        self.out_proj = Linear(b, d, bias=cfg.bias)
        self.hook_pattern = HookPoint()

    def new_state(self, batch: int, max_len: int, dtype: torch.dtype, device):
        raise LlmarchError("mixer 'bottleneck' is bidirectional: an encoder has no decode state")

    def cache_bytes(self, dtype: torch.dtype, max_len: int) -> tuple[int, int]:
        return 0, 0  # no decode state

    def state_note(self, dtype: str) -> str:
        return "none (bidirectional: encoders only)"

    def forward(self, x: torch.Tensor, ctx) -> torch.Tensor:  # (B, T, C) -> (B, T, C)
        B, T, _ = x.shape
        sub = self._modules
        h = sub["in_norm"](sub["in_proj"](x))  # (B, T, b)
        if self.qkv_from == "shared_qk":
            s, u = sub["qk_norm"](sub["qk_proj"](x)), x
        else:
            s = u = h if self.qkv_from == "inner" else x
        H, D = self.n_heads, self.head_dim
        q, k, v = (split_heads(sub[p](t), H, D) for p, t in (("q_proj", s), ("k_proj", s), ("v_proj", u)))
        dropout_p = self.dropout if self.training else 0.0
        y = self.kernel(q, k, v, ctx.mask, False, dropout_p, sub["hook_pattern"], self.scale)  # (B, H, T, D)
        h = sub["attn_norm"](h + sub["o_proj"](y.transpose(1, 2).reshape(B, T, H * D)))
        for ffn, norm in zip(sub["ffns"], sub["ffn_norms"]):
            h = norm(h + ffn(h))
        return sub["out_proj"](h)
