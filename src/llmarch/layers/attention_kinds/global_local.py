"""PEGASUS-X's global-local attention (Phang et al. 2022, "Investigating Efficiently Extending Transformers for
Long Input Summarization", §3.1): the stack puts G learned global tokens before the T tokens (global_tokens,
models/stack.py); each token attends to the G global tokens and to the tokens of its own block of
local_block_size (block (p + local_block_offset) // local_block_size: a per-layer offset staggers the blocks, §3.1's
"staggered blocks"), and each global token attends to every global token and every token, all in one softmax per
query with the layer's one set of projections. Padding is never a key. Bidirectional only (an encoder's), over
whole sequences; dense: the whole (G + T) x (G + T) score matrix is formed."""
from __future__ import annotations

import torch

from ...errors import LlmarchError
from .kind import ATTENTION_KINDS, AttentionKind


@ATTENTION_KINDS.register("global_local")
class GlobalLocal(AttentionKind):
    bidirectional_only = True

    def __init__(self, cfg, layer: int):
        super().__init__(cfg, layer)
        if cfg.causal:
            raise LlmarchError("attention='global_local' is bidirectional (an encoder's): its global tokens see every "
                               "token")
        self.globals, self.size, self.offset = cfg.global_tokens, cfg.local_block_size, cfg.local_block_offset

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        if cfg.global_tokens <= 0 or cfg.local_block_size <= 0 or not 0 <= cfg.local_block_offset < \
                cfg.local_block_size or cfg.positions == "rope":
            raise LlmarchError(f"attention='global_local' needs global_tokens > 0, local_block_size > 0 and "
                               f"0 <= local_block_offset < local_block_size (got {cfg.global_tokens}, "
                               f"{cfg.local_block_size}, {cfg.local_block_offset}), and positions other than rope")

    def attend(self, attn, x, q, k, v, ctx, dropout_p):
        if attn._modules.get("cache") is not None:
            raise LlmarchError("attention='global_local' runs over whole sequences (an encoder's), not a cache")
        B, S = x.shape[:2]  # S = G + T
        G, T = self.globals, S - self.globals
        ones = torch.ones(G, dtype=torch.bool, device=x.device)
        real = torch.ones(B, T, dtype=torch.bool, device=x.device) if ctx.pad_mask is None else ctx.pad_mask
        block = (torch.arange(T, device=x.device) + self.offset) // self.size
        local = torch.cat([ones.expand(T, G), block[:, None] == block[None, :]], dim=1)  # (T, S): token rows
        rows = torch.cat([torch.ones(G, S, dtype=torch.bool, device=x.device), local])  # (S, S): global rows first
        mask = rows[None, None] & torch.cat([ones.expand(B, G), real], dim=1)[:, None, None, :]  # (B, 1, S, S)
        return attn.kernel(q, k, v, mask, False, dropout_p, attn._modules["hook_pattern"], attn.scale, None)
