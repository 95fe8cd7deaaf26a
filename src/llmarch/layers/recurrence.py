"""How a stack runs its blocks, chosen by `ModelConfig.recurrence` from RECURRENCES: 'none' runs each block once, in
order; a recurrence runs them in a schedule of its own, a block possibly several times, each run (an invocation) with
a decode state of its own, so cached decoding equals the whole forward as for any stack. forward(x, run, ctx):
run(k, h, ctx) runs invocation k on h, in the stack's attention context or one the recurrence derives from it
(Funnel-Transformer's pooled positions: funnel.py).

'hrm': the Hierarchical Reasoning Model (Wang et al. 2025, "Hierarchical Reasoning Model", arXiv 2506.21734, §2): the
blocks form two recurrent modules, a fast low-level one (the first n_layers / 2 blocks) and a slow high-level one (the
rest), each ending in a norm of its own. From z_H = the embeddings and z_L = a learned start vector,

    for each of hrm_high_cycles high cycles:
        z_L = norm_L(f_L(z_L + z_H))    hrm_low_cycles times
        z_H = norm_H(f_H(z_H + z_L))

and z_H is the stack's output (the stack's own final norm off: final_norm=False).

'loop': a recurrent-depth stack (Geiping et al. 2025, "Scaling up Test-Time Compute with Latent Reasoning: A Recurrent
Depth Approach", arXiv 2502.05171, §3: prelude, recurrent block, coda; Dory's input, recurrent and output sections):
the first loop_prelude blocks run once, giving e = norm(h); the middle blocks then run loop_count times, each pass from
h = norm(h) + e (the prelude's output injected again, as Dory adds it, where Huginn concatenates); the last loop_coda
blocks run once on the last pass's output. Each pass over a middle block is an invocation of its own, with its own
KV cache (Dory's recurrent_kv_cache_mode 'per_loop'). With loop_message_rank, Inkling 2 Loop's passes instead
(loop_messages.py): over a stack of block sums (attn_residual_block), each pass restarts from the prelude's output,
and the looped blocks of the passes after the first read messages retrieved from the previous pass's stack."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import LlmarchError
from .loop_messages import MessageAttention
from .norms import make_norm
from ..registry import Registry

RECURRENCES: Registry = Registry("recurrence")


def check_recurrence(cfg) -> None:
    if cfg.recurrence not in RECURRENCES.names():
        raise LlmarchError(f"unknown recurrence {cfg.recurrence!r}; choose one of: {', '.join(RECURRENCES.names())}")
    if cfg.recurrence != "none":
        RECURRENCES[cfg.recurrence].check(cfg)


class HRM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.high, self.low, self.half = cfg.hrm_high_cycles, cfg.hrm_low_cycles, cfg.n_layers // 2
        # z_L's start (HRM's z_L_init: zeros, frozen, so a buffer: nothing trains it)
        self.register_buffer("low_init", torch.zeros(cfg.d_model))
        self.low_norm, self.high_norm = make_norm(cfg), make_norm(cfg)
        low, high = list(range(self.half)), list(range(self.half, 2 * self.half))
        self._order = (low * self.low + high) * self.high

    @classmethod
    def check(cls, cfg) -> None:
        if cfg.hrm_high_cycles <= 0 or cfg.hrm_low_cycles <= 0 or cfg.n_layers % 2:
            raise LlmarchError(f"recurrence='hrm' needs positive hrm_high_cycles and hrm_low_cycles and an even "
                               f"n_layers (two modules), got {cfg.hrm_high_cycles}, {cfg.hrm_low_cycles} and "
                               f"{cfg.n_layers}")
        if not cfg.causal or cfg.n_decoder_layers or cfg.layer_types is not None or cfg.layer_groups \
                or cfg.kv_shared_layers or cfg.final_norm or cfg.altup_streams > 1 \
                or cfg.hyper_connection != "none" or cfg.canon_kv or cfg.canon_out or cfg.moe_shortcut \
                or cfg.relative_bias_per_layer or cfg.ple_dim or cfg.mixer != "attention" or cfg.attn_period:
            raise LlmarchError("recurrence='hrm' runs one kind of attention block in a decoder-only stack without "
                               "final_norm, layer types, shared or per-layer parts, AltUp, hyper-connections, Canon "
                               "layers or moe_shortcut")

    def order(self) -> list[int]:
        """The block of each invocation, in the order they run."""
        return self._order

    def forward(self, x: torch.Tensor, run, ctx) -> torch.Tensor:
        """x (B, T, C): the embeddings; run(k, h): invocation k on h (in the stack's context ctx)."""
        z_high, z_low, k = x, self.low_init.to(x.dtype).expand_as(x), 0
        for _ in range(self.high):
            for _ in range(self.low):
                h = z_low + z_high
                for _ in range(self.half):
                    h, k = run(k, h), k + 1
                z_low = self.low_norm(h)
            h = z_high + z_low
            for _ in range(self.half):
                h, k = run(k, h), k + 1
            z_high = self.high_norm(h)
        return z_high


class Loop(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.prelude, self.coda, self.count = cfg.loop_prelude, cfg.loop_coda, cfg.loop_count
        self.looped = cfg.n_layers - self.prelude - self.coda
        if cfg.loop_message_rank:  # Inkling 2 Loop's messages between passes
            self.messages = MessageAttention(cfg, self.looped)
        else:
            self.norm = make_norm(cfg)  # norm 'l2' (Dory): the sphere's projection, no parameters
        middle = list(range(self.prelude, self.prelude + self.looped))
        self._order = list(range(self.prelude)) + middle * self.count + list(range(cfg.n_layers - self.coda,
                                                                                      cfg.n_layers))

    @classmethod
    def check(cls, cfg) -> None:
        if cfg.loop_prelude < 0 or cfg.loop_coda < 0 or cfg.loop_count < 1 \
                or cfg.loop_prelude + cfg.loop_coda >= cfg.n_layers:
            raise LlmarchError(f"recurrence='loop' needs loop_prelude, loop_coda >= 0 leaving some of the n_layers "
                               f"blocks to loop, and loop_count >= 1; got {cfg.loop_prelude}, {cfg.loop_coda}, "
                               f"{cfg.n_layers} and {cfg.loop_count}")
        if not cfg.causal or cfg.n_decoder_layers or cfg.layer_groups or cfg.kv_shared_layers \
                or cfg.kv_source_layers or cfg.altup_streams > 1 or cfg.hyper_connection != "none" \
                or cfg.moe_shortcut or cfg.relative_bias_per_layer or cfg.ple_dim:
            raise LlmarchError("recurrence='loop' runs blocks of a decoder-only stack without shared or per-layer "
                               "parts, AltUp, hyper-connections or moe_shortcut")
        if cfg.loop_message_rank < 0:
            raise LlmarchError(f"loop_message_rank is the message gates' rank, >= 0 (0: Dory's injection), got "
                               f"{cfg.loop_message_rank}")
        n = cfg.attn_residual_block
        if cfg.loop_message_rank and (not n or not cfg.loop_prelude or cfg.loop_prelude % n
                                      or (cfg.n_layers - cfg.loop_coda) % n):
            raise LlmarchError("recurrence='loop' with loop_message_rank retrieves messages from block sums: it needs "
                               "attn_residual_block, and a nonempty prelude and looped blocks that start and end at "
                               "block boundaries")
        if not cfg.loop_message_rank and (any(True for _ in make_norm(cfg).parameters()) or cfg.attn_residual_block):
            raise LlmarchError("recurrence='loop' injects the prelude's output through a norm without parameters, into "
                               "one residual stream (no attn_residual_block)")

    def order(self) -> list[int]:
        """The block of each invocation, in the order they run."""
        return self._order

    def forward(self, x: torch.Tensor, run, ctx) -> torch.Tensor:
        """x (B, T, C): the embeddings; run(k, h): invocation k on h (in the stack's context ctx)."""
        k = 0
        for _ in range(self.prelude):
            x, k = run(k, x), k + 1
        if self._modules.get("messages") is not None:
            return self._passes_with_messages(x, run, k)
        injected = self.norm(x)
        for _ in range(self.count):
            x = self.norm(x) + injected
            for _ in range(self.looped):
                x, k = run(k, x), k + 1
        for _ in range(self.coda):
            x, k = run(k, x), k + 1
        return x

    def depth_macs(self, blocks, rows: int) -> tuple[int, int]:
        """(multiply-adds per token of the depth attentions, message retrievals and gates of every invocation, the
        rows of the stack of block sums after the last), from a stack of `rows` rows, on _passes_with_messages's
        schedule, each block saying its own (Block.depth_macs)."""
        macs = 0

        def invoke(j: int, messages: bool = False) -> None:
            nonlocal macs, rows
            m, rows = blocks[j].depth_macs(rows, messages)
            macs += m

        for j in range(self.prelude):
            invoke(j)
        start = rows
        for p in range(self.count):
            sources, rows = rows - start, start  # the previous pass's own rows; each pass restarts
            for layer in range(self.looped):
                macs += self.messages.macs(sources) if p else 0
                invoke(self.prelude + layer, p > 0)
        for j in range(len(blocks) - self.coda, len(blocks)):
            invoke(j)
        return macs, rows

    def _passes_with_messages(self, x: torch.Tensor, run, k: int) -> torch.Tensor:
        """x (B, T, m + 1, C): the prelude's stack of block sums. Each pass restarts from it; the first looped
        block closes a block with the prelude's partial sum (row m), so the previous pass's own rows, the messages'
        sources, are m + 1 on."""
        start, m = x, x.shape[2] - 1
        for p in range(self.count):
            sources, x = x[:, :, m + 1:], start
            for layer in range(self.looped):
                messages = self.messages(sources, layer) if p else None
                x, k = run(k, x, messages=messages), k + 1
        for _ in range(self.coda):
            x, k = run(k, x), k + 1
        return x


RECURRENCES.register("none")(None)
RECURRENCES.register("hrm")(HRM)
RECURRENCES.register("loop")(Loop)
