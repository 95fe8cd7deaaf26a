"""Merged self- and cross-attention (T5Gemma 2, Google 2025, "T5Gemma 2: Seeing, Reading, and Understanding
Longer", §2: "merged attention"): a decoder layer has no cross-attention of its own; its self-attention attends with
one softmax over its own keys (causal, within sliding_window where one is set) and the encoder output's, which the
same k and v projections (and key norm, without RoPE) make from the memory:
    y_t = softmax(q_t [K_self; K_mem]^T * scale + mask) [V_self; V_mem].
The memory's keys and values are projected once per generation (set_memory) and read by every decode step; in a
whole forward they come from ctx.memory. Without a memory (a decoder-only stack) the kind is causal attention.
Shapes: B batch, H heads, K KV heads, T queries, S own keys, M memory tokens, D head width."""
from __future__ import annotations

import torch

from ...errors import LlmarchError
from ..dsa import visible_keys
from .kind import ATTENTION_KINDS, AttentionKind, cached_kv


@ATTENTION_KINDS.register("merged")
class Merged(AttentionKind):
    uses_mask = True
    windowed = None  # a window over the own keys is optional (T5Gemma 2's sliding layers)
    softcaps = True
    reads_memory = True  # a decoder block of this kind has no cross-attention sublayer (block.py)

    def __init__(self, cfg, layer: int):
        super().__init__(cfg, layer)
        self.window = cfg.sliding_window
        self.memory_kv: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        if cfg.qk_norm not in ("none", "head") or cfg.attn_output_gate or cfg.attn_k_eq_v or cfg.v_norm:
            raise LlmarchError("attention 'merged' projects the memory's keys and values as its own: qk_norm 'none' "
                               "or 'head', without attn_output_gate, attn_k_eq_v or v_norm")

    def project_memory(self, attn, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, M, C) encoder output -> keys, values (B, K, M, D): the layer's own projections and key norm."""
        B, M, _ = memory.shape
        _, k, v = attn.qkv_proj(memory).split(attn.qkv_widths, dim=-1)
        k, v = k.view(B, M, -1, attn.head_dim), v.view(B, M, -1, attn.v_dim)
        if attn.k_norm is not None:
            k = attn.k_norm(k)
        return k.transpose(1, 2), v.transpose(1, 2)

    def set_memory(self, attn, memory: torch.Tensor | None) -> None:
        self.memory_kv = None if memory is None else self.project_memory(attn, memory)

    def attend(self, attn, x, q, k, v, ctx, dropout_p):
        k, v = cached_kv(attn, k, v, ctx)  # (B, K, S, D)
        B, _, T, _ = q.shape
        S = k.shape[2]
        mask = visible_keys(ctx, T, S, q.device)  # (B|1, 1, T, S): causality and padding
        if self.window is not None:  # the own keys less than `window` slots back, as the sliding kind counts
            back = ctx.input_pos[:, None] - torch.arange(S, device=q.device)
            mask = mask & (back < self.window)
        memory = self.project_memory(attn, ctx.memory) if ctx.memory is not None else self.memory_kv
        if memory is not None:
            M = memory[0].shape[2]
            seen = torch.ones(B, 1, 1, M, dtype=torch.bool, device=q.device) if ctx.memory_mask is None \
                else ctx.memory_mask
            mask = torch.cat((mask.expand(B, 1, T, S), seen.expand(B, 1, T, M)), dim=-1)
            k, v = torch.cat((k, memory[0].to(k.dtype)), dim=2), torch.cat((v, memory[1].to(v.dtype)), dim=2)
        return attn.kernel(q, k, v, mask, False, dropout_p, attn._modules["hook_pattern"], attn.scale, attn.sinks)
