"""The attention-kind protocol. An attention layer (attention.py) projects q, k, v, applies QK-norm and RoPE,
then hands them to its kind, which decides which keys each query sees and computes the attention output:

- `attend(attn, x, q, k, v, ctx, dropout_p) -> (B, H, T, D)`: q (B, H, T, D), k and v (B, K, T, D) of this
  call's tokens; the kind writes them to the decode state (attn.cache) when there is one and reads what it
  needs back (cached_kv), so a whole sequence and a prompt followed by single tokens give the same outputs;
- `new_state(attn, batch, max_len, dtype, device)` and `cache_bytes(attn, dtype, max_len)`: its decode state
  (a KV cache by default; a constant-size recurrent state for the linear kinds); `bounded_state`: the state for
  decoding that only moves forward (a sliding window's ring of its last keys);
- `check(cfg)`: its own config fields; `modules(cfg, layer)`: submodules the attention layer holds for it
  (kept on the layer, so state-dict keys stay blocks.{i}.attn.<name>);
- `uses_mask`: whether it reads ctx.mask, the dense causal/padding/bias mask the model builds once per forward
  (kinds that build their own from ctx.pad_mask leave it unbuilt); `shares_qk`: keys are the queries
  (Reformer), so the layer projects no keys; `windowed`: its window size is `sliding_window` (None: a window is
  optional, relative_logits); `takes_sinks`:
  it puts the layer's learned sinks (attn.sinks, attn_sinks) in its softmax's denominator (sinks.py); `softcaps`: it
  can soft-cap the scores before its softmax (attn_softcap, Gemma 2: the attention's eager kernel and the
  blockwise engine take the cap; kinds with their own softmax arithmetic do not); `needs_positions`: the positions
  kind it reads (ctx.relative: disentangled attention's relative embeddings), which only it reads; None: any
  other; `bidirectional_only`: it has no
  causal form (LongT5's transient global tokens sum later tokens), so it is refused in a causal stack;
  `own_value_width`: its kernels take values of another width than q and k (value_dim, MiMo-V2-Flash), the width
  of its output and of its cache's values (attn.v_dim); `convolves_values`: it adds the value convolution of
  value_conv (value_conv.py: Nystromformer, YOSO), which other kinds refuse; `reads_memory`: in a decoder block it
attends over the encoder output itself (set_memory(attn, memory) before decoding; merged.py, T5Gemma 2), so the
block has no cross-attention."""
from __future__ import annotations

import torch
from torch import nn

from ...errors import LlmarchError
from ...registry import Registry
from ..kv_cache import KVCache
from ..positions import BIAS_POSITIONS

ATTENTION_KINDS: Registry = Registry("attention")


def windowed_kinds() -> list[str]:
    return [name for name in ATTENTION_KINDS.names() if ATTENTION_KINDS[name].windowed]


class AttentionKind:
    state_note = ""  # a per-sequence decode state in words (none: a KV cache grows per token)
    cache_note = ""  # its per-token cache in words, where it is not a plain KV cache (Mixer.cache_note)
    uses_mask = False
    shares_qk = False
    windowed = False
    takes_sinks = False
    softcaps = False
    needs_positions: str | None = None
    bidirectional_only = False
    own_value_width = False
    convolves_values = False
    reads_memory = False

    def __init__(self, cfg, layer: int):
        self.causal = cfg.causal

    @classmethod
    def check(cls, cfg) -> None:
        if cls.windowed is not None and cls.windowed != (cfg.sliding_window is not None):
            kinds = " or ".join(windowed_kinds())
            raise LlmarchError(f"attention={cfg.attention!r} and sliding_window={cfg.sliding_window}: "
                               f"a window size goes with {kinds} attention, and only with it")
        if not cls.uses_mask and cfg.positions in BIAS_POSITIONS:
            raise LlmarchError(f"attention={cfg.attention!r} does not take a position bias ({cfg.positions})")
        if cfg.attn_sinks and not cls.takes_sinks:
            raise LlmarchError(f"attn_sinks=True and attention={cfg.attention!r}: sinks join a softmax over keys, "
                               f"which this kind does not take")
        if cfg.attn_softcap is not None and not cls.softcaps:
            can = ", ".join(n for n in ATTENTION_KINDS.names() if ATTENTION_KINDS[n].softcaps)
            raise LlmarchError(f"attention={cfg.attention!r} cannot soft-cap its scores (attn_softcap="
                               f"{cfg.attn_softcap}); these kinds can: {can}")
        if cfg.value_width != cfg.head_dim and not cls.own_value_width:
            can = ", ".join(n for n in ATTENTION_KINDS.names() if ATTENTION_KINDS[n].own_value_width)
            raise LlmarchError(f"attention={cfg.attention!r} needs values as wide as q and k (value_dim="
                               f"{cfg.value_width}, head_dim={cfg.head_dim}); these kinds take other widths: {can}")
        if cfg.attn_softcap is not None and cfg.attn_softcap <= 0:
            raise LlmarchError(f"attn_softcap must be positive, got {cfg.attn_softcap}")
        owned = {ATTENTION_KINDS[n].needs_positions: n for n in ATTENTION_KINDS.names()} if \
            cls.needs_positions is None else {}
        if cls.needs_positions not in (None, cfg.positions) or cfg.positions in owned:
            raise LlmarchError(f"attention={cfg.attention!r} and positions={cfg.positions!r}: positions="
                               f"{cls.needs_positions or cfg.positions!r} go with attention="
                               f"{owned.get(cfg.positions, cfg.attention)!r}, and only with it")
        if cfg.value_conv and not cls.convolves_values:
            can = ", ".join(n for n in ATTENTION_KINDS.names() if ATTENTION_KINDS[n].convolves_values)
            raise LlmarchError(f"attention={cfg.attention!r} has no value convolution (value_conv={cfg.value_conv}); "
                               f"these kinds do: {can}")
        if cfg.attention_block <= 0:
            raise LlmarchError(f"attention_block must be positive, got {cfg.attention_block}")

    def modules(self, cfg, layer: int) -> dict[str, nn.Module]:
        return {}

    def new_state(self, attn, batch: int, max_len: int, dtype: torch.dtype, device):
        return KVCache(batch, attn.kv_heads, max_len, attn.head_dim, dtype, device, attn.v_dim)

    def bounded_state(self, attn, batch: int, max_len: int, dtype: torch.dtype, device):
        """Mixer.bounded_state: new_state's, unless the kind reads a bounded part of the cache."""
        return self.new_state(attn, batch, max_len, dtype, device)

    def cache_bytes(self, attn, dtype: torch.dtype, max_len: int) -> tuple[int, int]:
        """(per token, per sequence): keys and values of every KV head, per token."""
        return attn.kv_heads * (attn.head_dim + attn.v_dim) * torch.empty((), dtype=dtype).element_size(), 0

    def attend(self, attn, x, q, k, v, ctx, dropout_p: float) -> torch.Tensor:
        raise NotImplementedError


def cached_kv(attn, k: torch.Tensor, v: torch.Tensor, ctx) -> tuple[torch.Tensor, torch.Tensor]:
    """k, v (B, K, T, D) written into the layer's KV cache at ctx.input_pos, and what attention reads: the
    cache's filled slots (all of it for a fixed-shape compiled step, kv_len None); without a cache, k and v."""
    cache = attn._modules.get("cache")  # registered once a state is set; before that None in __dict__
    if cache is None:
        return k, v
    k, v = cache.update(ctx.input_pos, k, v)  # (B, K, S, D)
    if ctx.kv_len is not None:
        k, v = k[:, :, : ctx.kv_len], v[:, :, : ctx.kv_len]
    return k, v
