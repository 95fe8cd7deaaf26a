"""LongT5's transient-global attention (Guo et al. 2022, "LongT5", §3.1.2): local attention (local.py: the keys
within sliding_window - 1 slots, with the model's position bias) plus, in the same softmax, G global tokens made on
the fly from the layer's input: the input is cut into blocks of global_block_size tokens, each block's tokens
summed and normalised (global_norm, this layer's own), and projected by the layer's own key and value projections
(global_blocks.py numbers the blocks). A token's score on global token j gets the bias the positions give
(ctx.side_bias: T5's second table, over the offset j - the token's block); padding attends to unused global slots
only, as transformers has it, so no row is left without keys. Bidirectional only (an encoder's): a summary holds
later tokens. Dense: the whole T x (S + G) score matrix is formed."""
from __future__ import annotations

import torch

from ...errors import LlmarchError
from ..global_blocks import block_sums, fixed_blocks
from ..norms import make_norm
from .kind import ATTENTION_KINDS
from .local import Local


@ATTENTION_KINDS.register("transient_global")
class TransientGlobal(Local):
    bidirectional_only = True
    takes_sinks = False
    softcaps = False

    def __init__(self, cfg, layer: int):
        super().__init__(cfg, layer)
        if cfg.causal:
            raise LlmarchError("attention='transient_global' is bidirectional (an encoder's): its global tokens "
                               "sum later tokens")
        self.block = cfg.global_block_size

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        if cfg.global_block_size <= 0 or cfg.positions == "rope" or cfg.qk_norm != "none":
            raise LlmarchError("attention='transient_global' needs global_block_size > 0, and neither RoPE nor QK-norm "
                               "(its global keys are projected as they are)")

    def modules(self, cfg, layer: int):
        return {"global_norm": make_norm(cfg)}

    def attend(self, attn, x, q, k, v, ctx, dropout_p):
        if attn._modules.get("cache") is not None:
            raise LlmarchError("attention='transient_global' runs over whole sequences (an encoder's), not a cache")
        B, S = x.shape[:2]
        real = ctx.pad_mask if ctx.pad_mask is not None else torch.ones(B, S, dtype=torch.bool, device=x.device)
        ids, used = fixed_blocks(real, self.block)  # (B, S), (B, G)
        summaries = attn._modules["global_norm"](block_sums(x, ids, used.shape[1]))  # (B, G, C)
        rows = attn.qkv_proj(summaries).split([h * attn.head_dim for h in attn.qkv_heads], dim=-1)
        kg, vg = (t.unflatten(-1, (attn.n_kv_heads, attn.head_dim)).transpose(1, 2) for t in rows[1:])  # (B, K, G, D)
        local = self.window_mask(ctx, S)
        if local.dtype == torch.bool:
            local = torch.zeros(local.shape, dtype=q.dtype, device=q.device).masked_fill(~local, float("-inf"))
        side = (real[:, :, None] == used[:, None, :])[:, None]  # (B, 1, S, G): real -> used slots, padding -> unused
        bias = ctx.side_bias if ctx.side_bias is not None else torch.zeros((), dtype=q.dtype, device=q.device)
        side = torch.where(side, bias, float("-inf"))
        H = max(local.shape[1], side.shape[1])
        mask = torch.cat([local.expand(B, H, S, S), side.expand(B, H, S, -1)], dim=-1)  # (B, H, S, S + G)
        k, v = torch.cat([k, kg], dim=2), torch.cat([v, vg], dim=2)
        return attn.kernel(q, k, v, mask, False, dropout_p, attn._modules["hook_pattern"], attn.scale, None)
