"""Llama 3.2 Vision's cross-attention layer (Meta 2024, "The Llama 3 Herd of Models", \u00a77.3: cross-attention
layers between every fourth self-attention layer of the language model; transformers' MllamaCrossAttentionDecoderLayer):
with image states v (B, S, C), x += tanh(g_attn) * CrossAttn(n1(x), v), each head's queries and keys RMS-normed
(q_norm, k_norm), then x += tanh(g_mlp) * r * MLP(n2(x)), r 1 for a token that may see some image tile, 0 for one that
sees none (transformers' full_text_row_masked_out_mask). Such a token's attention is not masked at all: it reads every
image state, as transformers' mask (zeroed on that row) lets it.
The image states come as ctx.memory and the per-token mask of the tiles each token may see as ctx.memory_mask
(bool (B, 1, T, S): vision/mllama_tower.py). Without either, and with no image keys in its decode state, the layer is
skipped whole (returns x itself), as MllamaTextModel skips it: text-only use costs nothing. Decoding keeps the image
keys and values projected at prefill, and each new token sees what the prompt's last token saw (transformers repeats
that row of the cross-attention mask for every generated token). The block hands the layer its input and takes its
output as it is (`whole_block`: its own norms, residual adds and MLP; `mixes` False and `holds_ffn`: the block builds
none of its own)."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import LlmarchError
from .attention import attention_setup, split_heads
from .ffn_factory import make_ffn
from .linear import Linear
from .mixer import MIXERS, Mixer
from .norms import make_norm


class ImageKV:
    """A cross-attention layer's decode state: the image keys and values (B, K, S, D) projected at prefill, and the
    last prompt token's tile mask (B, 1, 1, S) that later tokens reuse; all None until an image prompt fills them.
    Nothing is indexed by slot, so decoding may rewind through it; continuous batching gives a row its prompt's
    images (put_row), the other rows' keys grown to the longest with masked zeros."""

    by_slot = True

    def __init__(self, batch: int):
        self.batch = batch
        self.k = self.v = self.mask = None

    def fill(self, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> None:
        self.k, self.v, self.mask = k, v, mask

    def reorder(self, rows: torch.Tensor) -> None:
        if self.k is not None:
            self.k, self.v, self.mask = self.k[rows], self.v[rows], self.mask[rows]

    def put_row(self, row: int, src: "ImageKV", start: int, length: int) -> None:
        """Row `row` takes src's row 0 (slots do not matter: image keys have none)."""
        if src.k is None and self.k is None:
            return
        S = max(0 if t is None else t.shape[2] for t in (self.k, src.k))
        like = src.k if src.k is not None else self.k
        if self.k is None or self.k.shape[2] < S:  # (re)allocated to the longest images, the new keys masked
            shape = (self.batch, like.shape[1], S, like.shape[3])
            k, v = like.new_zeros(shape), like.new_zeros(shape)
            mask = torch.zeros(self.batch, 1, 1, S, dtype=torch.bool, device=like.device)
            if self.k is not None:
                _copy_keys((k, v, mask), (self.k, self.v, self.mask), slice(None))
            self.k, self.v, self.mask = k, v, mask
        for t in (self.k, self.v, self.mask):
            t[row].zero_()
        if src.k is not None:
            _copy_keys((self.k, self.v, self.mask), (src.k, src.v, src.mask), row, 0)

    def shift(self, n: int) -> None:
        """No history by slot: nothing moves."""

    def rows(self, n: int) -> "ImageKV":
        """The first n rows, reading this state's tensors as they are when used (put_row may grow them)."""
        return _RowsView(self, n)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.k, self.v, self.mask) if t is not None)


def _copy_keys(dst: tuple, src: tuple, rows, src_rows=slice(None)) -> None:
    """Keys, values (B, K, S, D) and mask (B, 1, 1, S) of src into dst's first S slots of `rows`."""
    n = src[0].shape[2]
    dst[0][rows, :, :n], dst[1][rows, :, :n] = src[0][src_rows], src[1][src_rows]
    dst[2][rows, ..., :n] = src[2][src_rows]


class _RowsView(ImageKV):
    """ImageKV.rows: the first n rows of a parent state, read through at each use."""

    def __init__(self, parent: ImageKV, n: int):
        self.parent, self.batch = parent, n

    k = property(lambda self: None if self.parent.k is None else self.parent.k[:self.batch])
    v = property(lambda self: None if self.parent.v is None else self.parent.v[:self.batch])
    mask = property(lambda self: None if self.parent.mask is None else self.parent.mask[:self.batch])


@MIXERS.register("vision_cross")
class VisionCross(Mixer):
    mixes = False
    holds_ffn = True
    whole_block = True
    runs = False  # text-only accounting counts it as held: it runs only with images
    residual_out = ("o_proj.weight", "mlp.down.weight")

    @classmethod
    def check(cls, cfg) -> None:
        if cfg.n_decoder_layers or not cfg.causal:
            raise LlmarchError("mixer='vision_cross' (Llama 3.2 Vision's cross-attention layer) belongs to a "
                               "decoder-only stack")

    def __init__(self, cfg, layer: int = 0):
        super().__init__()
        attention_setup(self, cfg)
        H, K, D = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.input_norm, self.post_norm = make_norm(cfg), make_norm(cfg)
        self.q_proj = Linear(cfg.d_model, H * D, bias=False)
        self.k_proj = Linear(cfg.d_model, K * D, bias=False)  # over image states already at d_model
        self.v_proj = Linear(cfg.d_model, K * D, bias=False)
        self.o_proj = Linear(H * D, cfg.d_model, bias=False)
        self.q_norm, self.k_norm = make_norm(cfg, D), make_norm(cfg, D)
        self.attn_gate, self.mlp_gate = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))  # tanh-gated adds
        self.mlp = make_ffn(cfg, layer)

    def new_state(self, batch: int, max_len: int, dtype: torch.dtype, device) -> ImageKV:
        return ImageKV(batch)

    def state_note(self, dtype: str) -> str:
        return "the prompt's image keys and values"

    def forward(self, x: torch.Tensor, ctx) -> torch.Tensor:
        """x (B, T, C) -> the layer's output (B, T, C); x itself without image states, given or kept."""
        state = self.cache
        if ctx.memory is None and (state is None or state.k is None):
            return x
        B, T, _ = x.shape
        q = self.q_norm(split_heads(self.q_proj(self.input_norm(x)), self.n_heads, self.head_dim))  # (B, H, T, D)
        if ctx.memory is not None:
            k = self.k_norm(split_heads(self.k_proj(ctx.memory), self.n_kv_heads, self.head_dim))  # (B, K, S, D)
            v = split_heads(self.v_proj(ctx.memory), self.n_kv_heads, self.head_dim)
            mask = ctx.memory_mask  # (B, 1, T, S)
            if state is not None:
                state.fill(k, v, mask[:, :, -1:])
        else:
            k, v, mask = state.k, state.v, state.mask.expand(-1, -1, T, -1)
        sees = mask.any(-1, keepdim=True)  # (B, 1, T, 1): the token sees some tile
        y = self.kernel(q, k, v, mask | ~sees, False, 0.0, _no_hook, self.scale)  # (B, H, T, D)
        x = x + self.attn_gate.tanh() * self.o_proj(y.transpose(1, 2).reshape(B, T, -1))
        return x + self.mlp_gate.tanh() * (self.mlp(self.post_norm(x)) * sees[:, 0].to(x.dtype))


def _no_hook(pattern: torch.Tensor) -> torch.Tensor:
    return pattern
