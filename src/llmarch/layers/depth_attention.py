"""Block attention residuals (attn_residual_block; Inkling 2's BlockAttentionResidual): attention over depth
instead of the plain residual stream. The stream is a stack (B, T, m + 1, C): the sums of m finished blocks of
layers (the token embeddings the first) and the partial sum of the current block, its last row. Each sublayer reads
a softmax attention over the stack with a learned query per input, q (n, C), zero at init (a plain mean):

    h = rms(s_j) normalised sources, no gain;   out_i = sum_j softmax_j(q_i . h_j / sqrt(C)) h_j.

Layer i's mixer reads one output (three in a layer with attn_split_inputs: its queries', keys' and values' inputs,
each through a norm of its own); layer 0 reads its input as it is. Every attn_residual_block layers (layer i with
i mod N = 0) a new block starts: the layer's input joins the finished sums and the partial sum restarts at the
mixer's output; elsewhere the mixer's output adds to the partial sum. The FFN reads one output over the stack as it
then is and adds to the partial sum; after the last layer one more output, the final norm's input. Computed in fp32,
as transformers keeps these modules."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import LlmarchError
from .norms import rms_normalize

EPS = 1e-6  # transformers' Inkling2UnweightedRMSNorm default, which the block attention residuals keep


class DepthAttention(nn.Module):
    """n learned queries over the normalised stack x (B, T, m, C) -> (B, T, n, C)."""

    def __init__(self, d_model: int, queries: int = 1):
        super().__init__()
        # (C,) for one query, (n, C) for several, as transformers stores them
        self.query = nn.Parameter(torch.zeros(d_model) if queries == 1 else torch.zeros(queries, d_model))

    def init_ssm(self) -> None:
        """The stack's init hook: the queries back to zero, attention's plain mean over the blocks."""
        nn.init.zeros_(self.query)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attend(x, self.query)

    def macs(self, rows: int) -> int:
        """Multiply-adds per token over a stack of `rows` rows (analysis/accounting.py): each query's scores and
        weighted sum, 2 n rows C."""
        return 2 * self.query.numel() * rows

    @staticmethod
    def attend(x: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """The queries (C,) or (n, C) over the normalised stack x (B, T, m, C) -> (B, T, n, C)."""
        h = rms_normalize(x.float(), EPS)  # (B, T, m, C)
        C = h.shape[-1]
        scores = torch.einsum("btmc,nc->btnm", h, query.float().view(-1, C)) * C ** -0.5
        return torch.einsum("btnm,btmc->btnc", scores.softmax(-1), h)


def check_depth_attention(cfg) -> None:
    if cfg.attn_residual_block < 0:
        raise LlmarchError(f"attn_residual_block counts layers per block, >= 0 (0: none), got "
                           f"{cfg.attn_residual_block}")
    split = [i for i in range(cfg.n_layers) if cfg.for_layer(i).attn_split_inputs]
    if split and not cfg.attn_residual_block:
        raise LlmarchError("attn_split_inputs reads three depth attentions' outputs: it needs attn_residual_block")
    if cfg.recurrence == "loop" and cfg.loop_message_rank:  # the looped blocks' gated inputs are split ones too
        split += range(cfg.loop_prelude, cfg.n_layers - cfg.loop_coda)
    if any(cfg.layer_mixer(i) != "attention" or cfg.for_layer(i).qkv_groups != 1
           or cfg.for_layer(i).bitlinear != "none" for i in split):
        raise LlmarchError("attn_split_inputs projects queries, keys and values from inputs of their own: mixer "
                           "'attention' with one fused projection (no qkv_groups or BitLinear)")
    if cfg.attn_residual_block and (not cfg.causal or cfg.n_decoder_layers or cfg.block != "sequential"
                                    or cfg.norm_placement != "pre" or cfg.hyper_connection != "none"
                                    or cfg.residual_mix != "none" or cfg.moe_shortcut or cfg.laurel_rank
                                    or cfg.altup_streams > 1 or cfg.ple_dim or cfg.layer_scalar or cfg.side_conv
                                    or cfg.residual_multiplier != 1.0 or cfg.residual_alpha != 1.0
                                    or cfg.ffn == "none" or cfg.layer_groups
                                    or cfg.recurrence not in ("none", "loop" if cfg.loop_message_rank else "none")
                                    or cfg.global_tokens or cfg.task_prompt):
        raise LlmarchError("attn_residual_block needs a decoder-only stack of sequential pre-norm blocks, each with a "
                           "mixer and an FFN, without hyper-connections, residual mixes or multipliers, AltUp, "
                           "LAuReL, moe_shortcut, per-layer inputs, layer_scalar, side_conv, shared or recurrent "
                           "layers (but Inkling 2 Loop's: loop_message_rank), global tokens or a task prompt")
