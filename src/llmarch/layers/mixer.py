"""The sequence-mixer protocol: what mixes information across positions in a block (attention, Mamba,
Mamba-2, Hyena, and those to come), chosen by name from MIXERS. Code outside a mixer never asks which mixer
it is; it calls this protocol:

- `forward(x (B, T, C), ctx) -> (B, T, C)` over a sequence. With a decode state in `cache`, a call continues
  the sequence from it and leaves the state after its last token, so a prompt and then one token per call
  give what one call over the whole sequence gives: that call with T = 1 is the decoding step.
- `new_state(batch, max_len, dtype, device)`: the state decoding needs (a KV cache, a recurrent state, a
  convolution tail), which the model keeps in `cache`; `state.reorder(rows)` for beam search; `state.nbytes`;
  for continuous batching (generate/batch.py) `state.put_row(row, one_row_state, start, length)` (a request
  prefilled alone joins the batch as if left-padded with `start` slots) and `state.shift(n)` (every row's slots
  move n to the left, or right for n < 0) and `state.rows(n)` (its first n rows, sharing its memory: a step
  over them updates it in place).
- `cache_bytes(dtype, max_len) -> (per token, per sequence)`: what that state costs (accounting).
- `score_dims(cfg)`: per query, the widths of its q.k and pattern.v products over all heads (2·H·D for
  attention; 0 for a mixer without them), which the accounting counts as 6·T·that FLOPs per token;
- `kv_heads(cfg)`: the key/value heads its per-token cache holds (attention's n_kv_heads, a composite's
  attention part's; 0 for a mixer without a KV cache of heads), which `llmarch info` reports;
- `check(cfg)`: the mixer's own config fields, validated where the config is built; `state_note(dtype)`: what
  its per-sequence state is, in words, and `cache_note()` its per-token cache where that is no KV cache
  (`llmarch info`).
- `residual_out`: the names of its projections that write to the residual stream, which GPT-2's init
  scales by 1/sqrt(2 * layers) (Radford et al. 2019, §2.3).
- `no_decay`: the names of its parameters that training keeps out of weight decay whatever their shape (an
  SSM's decay rates: decayed toward 0 they would drift toward forgetting nothing; state-spaces/mamba marks
  A_log and D `_no_weight_decay`).
- `mixes`: False for mixer 'none' (no_mixer.py), whose block is its FFN alone: no norm, no sublayer, nothing
  added (Nemotron-H's MLP and MoE layers).
- `takes_norm`: True for a mixer that applies its block's input norm itself, where its computation needs it: the
  block hands it the residual stream and the norm, mixer(x, ctx, norm) (Zamba's shared block reads x before the
  norm: layers/shared_block.py); False: the block calls mixer(norm(x), ctx).
- `reads_shared_blocks`: True for a mixer that runs one of the stack's shared blocks (ctx.shared_blocks), which
  the stack then builds (cfg.shared_blocks of them) and hands over with the embeddings (ctx.embeds).
- `routing`: where a mixer routes tokens among experts of its own (MoA, layers/moa.py), the Routing of its last
  forward, which the training's router losses count (models/routing.py); mixers without experts have none.
- `bidirectional_only`: True for a mixer with no causal form and no decode state (FNet's Fourier transform,
  fourier.py; ConvBERT's span convolutions, which read later tokens): refused in a causal stack, left out of the
  causality checks.
- `holds_ffn`: True for a mixer that runs its block's FFNs itself (MobileBERT's bottleneck block, whose FFNs work at
  its inner width: bottleneck.py); the block then builds no FFN and no norm for one.
- `whole_block`: True for a mixer that is its block's whole computation, x -> mixer(x, ctx), with its own norms,
  residual adds and FFN (Llama 3.2 Vision's gated cross-attention layer, vision_cross.py, which returns x itself
  without image states); its block builds no norm or FFN (with `mixes` False and `holds_ffn`).
- `attr`: the attribute its block holds it under (attention keeps `attn`, so state-dict keys and hook
  names stay those of every checkpoint: blocks.{i}.attn.qkv_proj, blocks.{i}.attn.hook_pattern)."""
from __future__ import annotations

import torch
from torch import nn

from ..registry import Registry

MIXERS: Registry = Registry("mixer")


class Mixer(nn.Module):
    attr = "mixer"
    mixes = True  # the block runs it as its first sublayer (False: mixer 'none', a block that is its FFN alone)
    residual_out: tuple[str, ...] = ("out_proj.weight",)
    no_decay: tuple[str, ...] = ()
    takes_norm = False  # the block hands it x and its norm, mixer(x, ctx, norm), instead of mixer(norm(x), ctx)
    reads_shared_blocks = False  # it runs one of the stack's shared blocks (ctx.shared_blocks)
    holds_ffn = False  # it runs the block's FFNs itself (bottleneck.py): the block builds none
    bidirectional_only = False  # no causal form (FNet's Fourier transform, ConvBERT's mixed attention): encoders only
    whole_block = False  # the block is this mixer alone: x -> mixer(x, ctx) (vision_cross)
    # False: weights its block runs only with image states (vision_cross): text-only accounting counts no FLOPs for
    # them, adapters leave them out
    runs = True

    def __init__(self):
        super().__init__()
        self.cache = None  # the decode state while generating (new_state), else None

    @classmethod
    def check(cls, cfg) -> None:
        """Raise LlmarchError for a config this mixer cannot be built from (its own fields only)."""

    @classmethod
    def score_dims(cls, cfg) -> int:
        return 0

    @classmethod
    def kv_heads(cls, cfg) -> int:
        return 0

    def new_state(self, batch: int, max_len: int, dtype: torch.dtype, device):
        raise NotImplementedError

    def bounded_state(self, batch: int, max_len: int, dtype: torch.dtype, device):
        """A decode state for decoding that only moves forward (a prompt, then one token at a time: no rewind,
        no moved rows), which may hold only what later tokens read (a sliding window's last keys:
        ring_cache.py); by default new_state's."""
        return self.new_state(batch, max_len, dtype, device)

    def state_note(self, dtype: str) -> str:
        """Its per-sequence decode state in words; "" for one that only grows per token (a KV cache)."""
        return "constant in the context"

    def cache_note(self) -> str:
        """What its per-token cache holds, in words, where that is not a plain KV cache (`llmarch info`)."""
        return ""

    def cache_bytes(self, dtype: torch.dtype, max_len: int) -> tuple[int, int]:
        """(bytes per token, bytes per sequence) of the decode state: by default all per sequence."""
        return 0, per_sequence_bytes(lambda batch: self.new_state(batch, max_len, dtype, "meta"))


def per_sequence_bytes(new_state) -> int:
    """Bytes one more sequence adds to a state new_state(batch) makes: a batch of two less a batch of one
    (on the meta device: nothing allocated), so what the batch shares (Hyena's filters) is not counted."""
    return new_state(2).nbytes - new_state(1).nbytes
