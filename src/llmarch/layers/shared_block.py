"""Zamba's shared transformer block (Glorioso et al. 2024, "Zamba: A Compact 7B SSM Hybrid Model", §2 and Fig. 2;
"The Zamba2 Suite: Technical Report", 2024, §2): a Mamba backbone in which every few layers one transformer block,
whose weights all those layers share, reads the layer's stream x beside the original token embeddings e, and its
output, projected by the layer's own matrix, joins the input of the layer's Mamba mixer:

    t = FFN(norm_2(Attn(norm_1([x; e]))))                         (the shared block: 2d wide in, d out, no residual)
    x = x + Mamba(norm(x + t W_proj))                              (the layer: its norm is the block's ln1)

Attention runs over the 2d-wide concatenation (n_heads of head_dim, usually 2d / n_heads) and projects back to d.
The layers cycle through `shared_blocks` distinct blocks (Zamba2's num_mem_blocks: layer j of those that use one
takes block j mod shared_blocks). Zamba2 gives each layer its own low-rank adapters on the shared projections
(`shared_adapters`, rank `shared_adapter_rank`): q, k, v each get x W_down W_up added, and so does the FFN's fused
gate_up, so that layers sharing one block still compute differently at a small cost in parameters.

The blocks are the stack's, held once (`shared_blocks.{k}`: one parameter, several uses); a layer reaches its own
through ctx.shared_blocks, and keeps what is its own: the adapters, W_proj, its Mamba mixer (held under its registry
name, `blocks.{i}.mixer.mamba2.*`), and its decode state, the inner mixer's beside the keys and values its call of
the shared attention wrote (each call attends over its own layer's inputs).
Shapes: B batch, T query length, S key length, H query heads, K key/value heads, D head dim."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import LlmarchError
from .attention import attention_setup, split_heads
from .ffn import GATES, dense_ffn
from .hooks import HookPoint
from .kv_cache import KVCache
from .linear import Linear
from .mixer import MIXERS, Mixer
from .norms import make_norm
from .parallel_mixer import Composite, PartStates
from .positions import apply_rotary

ADAPTED = ("qkv", "gate_up")


class LowRank(nn.Module):
    """x W_down W_up, rank r: an adapter's term (the weights of the base model, trained with it: not LoRA's
    transform of adapters/)."""

    def __init__(self, dim: int, rank: int, out: int):
        super().__init__()
        self.down, self.up = Linear(dim, rank, bias=False), Linear(rank, out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))


class SharedAttention(nn.Module):
    """Causal attention over the 2d-wide [x; e], out to d; q, k, v fused in qkv_proj (rows: H·D, K·D, K·D)."""

    def __init__(self, cfg):
        super().__init__()
        attention_setup(self, cfg)  # heads, head_dim, dropout, scale (attn_scale), kernel
        self.widths = [self.n_heads * self.head_dim] + [self.n_kv_heads * self.head_dim] * 2
        self.qkv_proj = Linear(2 * cfg.d_model, sum(self.widths), bias=cfg.qkv_bias)
        self.o_proj = Linear(self.n_heads * self.head_dim, cfg.d_model, bias=cfg.o_bias)
        self.hook_pattern = HookPoint()

    def forward(self, h: torch.Tensor, ctx, delta: torch.Tensor | None, cache: KVCache | None) -> torch.Tensor:
        B, T, _ = h.shape
        qkv = self.qkv_proj(h)
        if delta is not None:
            qkv = qkv + delta
        q, k, v = qkv.split(self.widths, dim=-1)
        q = split_heads(q, self.n_heads, self.head_dim)  # (B, H, T, D)
        k, v = split_heads(k, self.n_kv_heads, self.head_dim), split_heads(v, self.n_kv_heads, self.head_dim)
        if ctx.rope is not None:
            q, k = apply_rotary(q, *ctx.rope), apply_rotary(k, *ctx.rope)
        if cache is not None:  # this layer's call: its keys written at the call's slots, all filled ones read
            k, v = cache.update(ctx.input_pos, k, v)  # (B, K, S, D)
            if ctx.kv_len is not None:
                k, v = k[:, :, :ctx.kv_len], v[:, :, :ctx.kv_len]
        dropout_p = self.dropout if self.training else 0.0
        y = self.kernel(q, k, v, ctx.mask, ctx.causal, dropout_p, self._modules["hook_pattern"], self.scale)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))


class SharedBlock(nn.Module):
    """t = FFN(norm_2(Attn(norm_1([x; e])))), with a layer's adapters' terms added to its projections."""

    def __init__(self, cfg):
        super().__init__()
        if cfg.ffn not in GATES:
            raise LlmarchError(f"shared_blocks: the shared block's FFN must be a gated kind ({', '.join(GATES)}), "
                               f"got ffn={cfg.ffn!r}")
        self.ln_in = make_norm(cfg, 2 * cfg.d_model)
        self.attn = SharedAttention(cfg)
        self.ln_mlp = make_norm(cfg)
        self.mlp = dense_ffn(cfg, cfg.ffn_hidden)

    def forward(self, x: torch.Tensor, ctx, adapters: nn.ModuleDict | None, cache: KVCache | None) -> torch.Tensor:
        h = self.ln_in(torch.cat((x, ctx.embeds), dim=-1))  # (B, T, 2C)
        mods = {} if adapters is None else adapters._modules
        qkv = torch.cat([mods[p](h) for p in "qkv"], dim=-1) if "q" in mods else None
        a = self.ln_mlp(self.attn(h, ctx, qkv, cache))  # (B, T, C)
        return self.mlp(a, mods["gate_up"](a)) if "gate_up" in mods else self.mlp(a)


@MIXERS.register("shared_block")
class SharedBlockMixer(Composite):
    takes_norm = True
    reads_shared_blocks = True
    residual_out = ()  # the inner mixer names its own (models/init.residual_projections finds it by prefix)

    @classmethod
    def check(cls, cfg) -> None:
        inner = cfg.shared_block_mixer
        if inner in ("shared_block", "parallel") or inner not in MIXERS.names() or not MIXERS[inner].mixes:
            raise LlmarchError(f"shared_block_mixer must name a sequence mixer other than shared_block, parallel and "
                               f"none, got {inner!r}")
        if cfg.shared_blocks < 1:
            raise LlmarchError(f"mixer 'shared_block' needs shared_blocks >= 1, got {cfg.shared_blocks}")
        if cfg.norm_placement != "pre" or cfg.block != "sequential":
            raise LlmarchError("mixer 'shared_block' needs norm_placement='pre' and block='sequential' (it applies "
                               "the block's input norm itself)")
        if cfg.value_width != cfg.head_dim:
            raise LlmarchError(f"mixer 'shared_block': the shared block's values are head_dim wide, not value_dim="
                               f"{cfg.value_width}")
        if cfg.attention != "full" or cfg.attn_softcap is not None or cfg.attn_sinks:
            raise LlmarchError("mixer 'shared_block': the shared block's attention is full causal attention, without "
                               "soft-capping or sinks")
        adapters = cfg.shared_adapters or []
        bad = [a for a in adapters if a not in ADAPTED]
        if bad or len(set(adapters)) != len(adapters):
            raise LlmarchError(f"shared_adapters must name distinct ones of {', '.join(ADAPTED)}, got {adapters!r}")
        if adapters and cfg.shared_adapter_rank < 1:
            raise LlmarchError(f"shared_adapter_rank must be >= 1, got {cfg.shared_adapter_rank}")
        MIXERS[inner].check(cfg)

    @classmethod
    def kv_heads(cls, cfg) -> int:  # its shared transformer block's attention
        return cfg.n_kv_heads

    @classmethod
    def score_dims(cls, cfg) -> int:
        return 2 * cfg.n_heads * cfg.head_dim + MIXERS[cfg.shared_block_mixer].score_dims(cfg)

    def __init__(self, cfg, layer: int = 0):
        super().__init__()
        d, r = cfg.d_model, cfg.shared_adapter_rank
        self.inner = cfg.shared_block_mixer
        self.add_module(self.inner, MIXERS[self.inner](cfg, layer))
        self.block_id = 0  # which shared block it runs: set by the stack, which counts the layers that run one
        self.kv_heads, self.head_dim = cfg.n_kv_heads, cfg.head_dim
        adapters = {}
        if "qkv" in (cfg.shared_adapters or ()):
            q, kv = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
            adapters.update(q=LowRank(2 * d, r, q), k=LowRank(2 * d, r, kv), v=LowRank(2 * d, r, kv))
        if "gate_up" in (cfg.shared_adapters or ()):
            adapters["gate_up"] = LowRank(d, r, 2 * cfg.ffn_hidden)
        self.adapters = nn.ModuleDict(adapters) if adapters else None
        self.proj = Linear(d, d, bias=False)  # W_proj: the shared block's output into this layer's stream
        self.cache = None

    def state_parts(self) -> list[Mixer]:
        """The state: the inner mixer's, then this layer's keys and values (which this mixer reads itself)."""
        return [self._modules[self.inner]] if "inner" in self.__dict__ else []

    def new_state(self, batch: int, max_len: int, dtype: torch.dtype, device) -> PartStates:
        inner = self._modules[self.inner].new_state(batch, max_len, dtype, device)
        return PartStates([inner, KVCache(batch, self.kv_heads, max_len, self.head_dim, dtype, device)])

    def bounded_state(self, batch: int, max_len: int, dtype: torch.dtype, device) -> PartStates:
        inner = self._modules[self.inner].bounded_state(batch, max_len, dtype, device)
        return PartStates([inner, KVCache(batch, self.kv_heads, max_len, self.head_dim, dtype, device)])

    def cache_bytes(self, dtype: torch.dtype, max_len: int) -> tuple[int, int]:
        per_token, per_sequence = self._modules[self.inner].cache_bytes(dtype, max_len)
        kv = 2 * self.kv_heads * self.head_dim * torch.empty((), dtype=dtype).element_size()
        return per_token + kv, per_sequence

    def state_note(self, dtype: str) -> str:
        return self._modules[self.inner].state_note(dtype)

    def cache_note(self) -> str:
        return "keys and values of the shared block's attention"

    def forward(self, x: torch.Tensor, ctx, norm: nn.Module) -> torch.Tensor:  # x: (B, T, C), before the norm
        sub = self._modules
        states = self.cache
        t = ctx.shared_blocks[self.block_id](x, ctx, sub.get("adapters"), None if states is None else states.parts[1])
        return sub[self.inner](norm(x + sub["proj"](t)), ctx)
