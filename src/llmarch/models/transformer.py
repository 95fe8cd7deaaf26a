"""The transformer language model: embed -> blocks -> final norm -> LM head. Causal (decoder-only: GPT-2,
LLaMA, ...) or bidirectional (encoder-only: BERT, RoBERTa) by `causal`."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import LlmarchError
from ..layers import POSITIONS, HookPoint
from ..layers.attention import AttentionContext
from ..layers.block import Block
from ..layers.heads import HeadTransform, Pooler
from ..layers.kv_cache import KVCache
from ..layers.norms import OffsetRMSNorm, make_norm
from .masks import causal_mask, position_ids


@dataclass
class ModelOutput:
    logits: torch.Tensor  # (B, T, V) for the lm head; (B, n_labels) classify; (B, T, n_labels) tokens
    hidden_states: torch.Tensor  # (B, T, C): the final hidden states the head reads (after ln_final)


class TransformerLM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.positions = POSITIONS[cfg.positions](cfg)
        self.token_types = nn.Embedding(cfg.type_vocab_size, cfg.d_model) if cfg.type_vocab_size else None
        self.embed_norm = make_norm(cfg) if cfg.embed_norm else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_final = make_norm(cfg) if cfg.final_norm else nn.Identity()
        if cfg.head == "lm":
            self.head_transform = HeadTransform(cfg) if cfg.head_transform else None
            self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=cfg.head_bias)
            if cfg.tied_head:
                self.lm_head.weight = self.embed.weight
        else:  # classify: a label per sequence from the pooled token; tokens: a label per token
            self.pooler = Pooler(cfg) if cfg.head == "classify" else None
            self.classifier = nn.Linear(cfg.d_model, cfg.n_labels)
        self.hook_embed = HookPoint()
        self.ln_final.hook_normalized = HookPoint()
        if self.embed.weight.device.type != "meta":
            self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """N(0, init_std) weights; residual output projections scaled by 1/sqrt(2 * n_layers)
        (GPT-2 paper §2.3), zero biases, unit norm gains."""
        std = self.config.init_std
        for name, p in self.named_parameters():
            if p.dim() == 1:
                offset = isinstance(self.get_submodule(name.rsplit(".", 1)[0]), OffsetRMSNorm)
                nn.init.ones_(p) if name.endswith("weight") and not offset else nn.init.zeros_(p)
            elif name.endswith(("o_proj.weight", "down.weight")):
                nn.init.normal_(p, std=std / math.sqrt(2 * self.config.n_layers))
            elif "positions" in name:
                nn.init.normal_(p, std=std / 2)
            else:
                nn.init.normal_(p, std=std)

    # ---- KV cache ------------------------------------------------------------------------------
    def setup_cache(self, batch: int, max_len: int, dtype: torch.dtype | None = None) -> None:
        if max_len > self.config.context_length:
            raise LlmarchError(f"cache length {max_len} exceeds context_length {self.config.context_length}")
        w = self.embed.weight
        for block in self.blocks:
            block.attn.kv_cache = KVCache(batch, self.config.n_kv_heads, max_len, self.config.head_dim,
                                          dtype or w.dtype, w.device)

    def clear_cache(self) -> None:
        for block in self.blocks:
            block.attn.kv_cache = None

    @property
    def cache_len(self) -> int | None:
        cache = self.blocks[0].attn.kv_cache
        return None if cache is None else cache.max_len

    # ---- forward -------------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                input_pos: torch.Tensor | None = None, last_only: bool = False,
                kv_len: int | None = None, token_type_ids: torch.Tensor | None = None) -> ModelOutput:
        """input_ids (B, T). attention_mask (B, S'): 1 for real tokens, 0 for (left) padding, over key slots
        0..S'-1 (S' >= this call's last slot + 1). input_pos (T,): cache slots of these tokens, default 0..T-1.
        last_only: compute logits for the last position only (prefill). kv_len: with a cache, the number of
        slots filled once this call's tokens are written (its last slot + 1), known to the caller as a Python
        int; attention then reads only those slots. Leave it None for a fixed-shape step (torch.compile).
        token_type_ids (B, T): segment ids, for configs with type_vocab_size (default all 0)."""
        B, T = input_ids.shape
        if not torch.compiler.is_compiling():
            self._check_ids(input_ids)
        if input_pos is None:
            input_pos = torch.arange(T, device=input_ids.device)
        key_len = kv_len or self.cache_len or T
        pad_mask = None
        if attention_mask is not None:
            pad_mask = attention_mask[:, :key_len].bool()
            if pad_mask.shape[1] < key_len:  # slots past the mask are future tokens: real, hidden by causality
                pad_mask = nn.functional.pad(pad_mask, (0, key_len - pad_mask.shape[1]), value=True)
        pos = position_ids(input_pos, B, pad_mask) + self.config.position_offset  # (B, T)
        # Without padding, a lone query over exactly the filled slots, or T queries over T keys, needs no mask
        # (unless a sliding window hides some of them).
        window = self.config.sliding_window
        plain = pad_mask is None and (key_len == T or (T == 1 and kv_len is not None))
        plain = plain and (window is None or window >= key_len)
        if self.config.causal:
            mask = None if plain else causal_mask(input_pos, key_len, pad_mask, window)
        else:  # bidirectional: every real token sees every real token
            mask = None if pad_mask is None else pad_mask[:, None, None, :]
        ctx = AttentionContext(mask=mask, causal=self.config.causal and T > 1, rope=self.positions.rotary(pos),
                               input_pos=input_pos, kv_len=kv_len)
        x = self.embed(input_ids)  # (B, T, C)
        if self.config.embed_scale:  # Gemma: sqrt(d_model), rounded to the activations' dtype as HF does
            x = x * torch.tensor(self.config.d_model ** 0.5, dtype=x.dtype)
        added = self.positions.embed(pos)
        if added is not None:
            x = x + added
        if self.token_types is not None:
            x = x + (self.token_types(token_type_ids) if token_type_ids is not None else self.token_types.weight[0])
        if self.embed_norm is not None:
            x = self.embed_norm(x)
        x = self.drop(self.hook_embed(x))
        for block in self.blocks:
            x = block(x, ctx)
        if last_only:
            x = x[:, -1:]
        x = self.ln_final.hook_normalized(self.ln_final(x))
        return ModelOutput(logits=self._head(x, None if pad_mask is None else pad_mask[:, :T]), hidden_states=x)

    def _head(self, x: torch.Tensor, pad_mask: torch.Tensor | None) -> torch.Tensor:
        if self.config.head == "classify":
            return self.classifier(self.drop(self.pooler(x, pad_mask)))  # (B, n_labels)
        if self.config.head == "tokens":
            return self.classifier(self.drop(x))  # (B, T, n_labels)
        if self.head_transform is not None:
            x = self.head_transform(x)
        return self.lm_head(x)  # (B, T, V)

    def _check_ids(self, input_ids: torch.Tensor) -> None:
        if input_ids.dtype not in (torch.int64, torch.int32):
            raise LlmarchError(f"input_ids must be an integer tensor, got {input_ids.dtype}")
        if input_ids.dim() != 2:
            raise LlmarchError(f"input_ids must have shape (batch, seq), got {tuple(input_ids.shape)}")
        T = input_ids.shape[1]
        if self.cache_len is None and T > self.config.context_length:
            raise LlmarchError(f"sequence of {T} tokens is longer than context_length {self.config.context_length}")
        if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= self.config.vocab_size):
            bad = input_ids[(input_ids < 0) | (input_ids >= self.config.vocab_size)][0].item()
            raise LlmarchError(f"token id {bad} out of range for vocab_size {self.config.vocab_size}")
