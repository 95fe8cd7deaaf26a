"""BLT (Pagnoni et al. 2024, "Byte Latent Transformer"), as transformers' BltForCausalLM computes it: bytes in,
next-byte logits out, through four stacks of LLaMA blocks (models/stack.py) and the parts of layers/byte_patches.py.

    entropy model (its own table, blocks, norm, head) -> next-byte entropies -> patch lengths (§2.3)
    bytes -> table + hash n-gram tables (§3.2.1) -> local encoder blocks -> h (B, T, C)
        patches: max-pool h per patch, project to k vectors, cross-attend to their bytes (§3.2.2) -> (B, P, k*C)
    -> (projected to the global width) global transformer over patches, causal -> g (B, P, G)
    local decoder: per layer, h cross-attends to W g (each byte to the patch before its own, k keys), then a block;
        final norm, LM head (§3.3)

Decoding recomputes the whole forward at each step, as transformers' generate does (its cached path does not run:
BltModel builds a DynamicCache from a config without num_hidden_layers), since a new byte may change the patches of
earlier ones: the decode state is the bytes so far."""
from __future__ import annotations

import torch
from torch import nn

from ..config import PATCH_STACKS, ModelConfig
from ..layers.byte_patches import (HashNgramEmbedding, PatchCrossAttention, entropy_patch_lengths, patch_ids,
                                   patch_masks, patch_pool)
from ..layers.linear import Linear
from ..layers.norms import make_norm
from .init import init_weights
from .stack import Stack, check_ids
from .transformer import ModelOutput


def part_config(cfg: ModelConfig, part: str) -> ModelConfig:
    """The config of one stack: 'patcher', 'encoder' or 'global' (cfg with patch_stacks[part]), or 'decoder' (cfg,
    one block: the local decoder runs a cross-attention before each)."""
    own = dict(cfg.patch_stacks[part]) if part in PATCH_STACKS else dict(n_layers=1)
    return cfg.replace(patch_stacks=None, hash_ngram_sizes=None, final_norm=part == "patcher", **own)


class ByteLatentLM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        pc, ec, gc, dc = (part_config(cfg, p) for p in ("patcher", "encoder", "global", "decoder"))
        self.patcher_embed = nn.Embedding(cfg.vocab_size, pc.d_model)
        self.patcher = Stack(pc)
        self.patcher_head = Linear(pc.d_model, cfg.vocab_size, bias=False)
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.hash_embed = HashNgramEmbedding(cfg)
        self.encoder = Stack(ec)
        k = cfg.patch_cross_k
        self.encoder_patches = Linear(cfg.d_model, k * cfg.d_model, bias=False)
        self.encoder_cross = PatchCrossAttention(ec)
        # transformers projects the k pooled vectors only where their width differs from the global one
        self.global_in = Linear(k * cfg.d_model, gc.d_model, bias=False) if k * cfg.d_model != gc.d_model else None
        self.global_stack = Stack(gc)
        self.decoder_patches = Linear(gc.d_model, k * cfg.d_model, bias=False)
        self.decoder_cross = nn.ModuleList(PatchCrossAttention(dc) for _ in range(cfg.n_layers))
        self.decoder_layers = nn.ModuleList(Stack(dc) for _ in range(cfg.n_layers))
        self.ln_final = make_norm(cfg)
        self.lm_head = Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self._ids: torch.Tensor | None = None  # the decode state: the bytes so far (B, max_len)
        if self.embed.weight.device.type != "meta":
            self.reset_parameters()

    def reset_parameters(self) -> None:
        init_weights(self, self.config)

    def stacks(self) -> dict[str, tuple[Stack, ModelConfig]]:
        """Each stack of blocks (build.stacks) with the config it was built from."""
        own = {p: (getattr(self, a), part_config(self.config, p))
               for p, a in (("patcher", "patcher"), ("encoder", "encoder"), ("global", "global_stack"))}
        dc = part_config(self.config, "decoder")
        return {**own, **{f"decoder.{i}": (layer, dc) for i, layer in enumerate(self.decoder_layers)}}

    # ---- accounting (analysis/accounting.py), per byte at a context of T bytes in T / mean_patch_length patches ----
    def stack_rows(self, context: int) -> dict[str, float]:
        """Rows per byte of each stack: the global transformer's are patches (mean_patch_length, an assumption:
        entropy patching's patch lengths vary with the text)."""
        return {"global": 1 / self.config.mean_patch_length}

    def outside_macs(self, context: int) -> tuple[int, float]:
        """(the parameters between the stacks, their multiply-adds per byte): the byte tables are read, not
        multiplied by; the pooled patches' projections run once a patch; the encoder's P*k patch queries attend over
        the T bytes, the decoder's T bytes over the P*k patch vectors (dense, masked)."""
        T, k = context, self.config.patch_cross_k
        P = T / self.config.mean_patch_length
        per_patch = [self.encoder_patches, self.decoder_patches] + ([self.global_in] if self.global_in else [])
        cross = self.encoder_cross.macs(P * k, T) + sum(c.macs(T, P * k) for c in self.decoder_cross)
        parts = [self.patcher_embed, self.hash_embed, self.encoder_cross, *self.decoder_cross, *per_patch]
        held = sum(p.numel() for part in parts for p in part.parameters())
        return held, sum(p.numel() for m in per_patch for p in m.parameters()) * P / T + cross / T

    # ---- decode state: the bytes so far ---------------------------------------------------------
    def setup_cache(self, batch: int, max_len: int, dtype: torch.dtype | None = None, bounded: bool = False) -> None:
        self._ids = torch.zeros(batch, max_len, dtype=torch.long, device=self.embed.weight.device)

    def clear_cache(self) -> None:
        self._ids = None

    def caches(self) -> list:
        return []  # no per-layer state: the bytes, indexed by slot, rewind as they are

    def cache_bytes(self) -> tuple[int, int]:
        """(bytes per token, bytes per sequence) of the decode state (analysis/accounting.py): one int64 per byte."""
        return 8, 0

    def reorder_cache(self, rows: torch.Tensor) -> None:
        self._ids = self._ids[rows]

    @property
    def cache_len(self) -> int | None:
        return None if self._ids is None else self._ids.shape[1]

    # ---- forward ---------------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                input_pos: torch.Tensor | None = None, kv_len: int | None = None) -> ModelOutput:
        """input_ids (B, T) bytes (left-padded with attention_mask, 1 at real bytes) -> logits (B, T, V). With a
        decode state (setup_cache), the bytes go to slots input_pos and the forward runs over the first kv_len."""
        if not torch.compiler.is_compiling():
            check_ids(input_ids, self.config, self.cache_len)
        return self.step(input_ids, input_pos, kv_len, attention_mask, last_only=False)

    def step(self, ids: torch.Tensor, input_pos: torch.Tensor | None, kv_len: int | None,
             attention_mask: torch.Tensor | None, memory_mask: torch.Tensor | None = None,
             last_only: bool = True) -> ModelOutput:
        """The decoding engine's step (generate/engine.py): the bytes written to their slots, then the whole forward
        over the first kv_len slots (None: all of them, as the compiled step reads the static cache: the model is
        causal, so later slots change nothing before them), the written slots' positions returned (the last only,
        with last_only)."""
        if self._ids is not None:
            self._ids[:, input_pos] = ids
            ids = self._ids[:, :kv_len]
            attention_mask = None if attention_mask is None else attention_mask[:, :kv_len]
        h = self._run(ids, attention_mask)
        h = h[:, input_pos] if self._ids is not None else h
        h = h[:, -1:] if last_only else h
        return ModelOutput(logits=self.lm_head(h), hidden_states=h)

    def _run(self, ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        B, T = ids.shape
        k = self.config.patch_cross_k
        # the entropy model reads every byte, padding included, as transformers' BltPatcher does (no mask)
        logits = self.patcher_head(self.patcher.run(self.patcher_embed(ids)))  # in the model's dtype, as transformers
        entropy = torch.distributions.Categorical(logits=logits).entropy()
        lengths = entropy_patch_lengths(entropy, self.config.patch_threshold)
        P = lengths.shape[1]
        ids_enc, ids_dec = patch_ids(lengths, T), patch_ids(lengths[:, 1:], T)
        enc_mask, dec_mask = patch_masks(ids_enc, ids_dec, P, k)
        x = self.hash_embed(ids, self.embed(ids))
        h = self.encoder.run(x, mask)
        if mask is not None:  # padded bytes feed the patches: their states as transformers' (SDPA) computes them
            h = torch.where(mask[..., None].bool(), h, _attending_to_nothing(self.encoder, x))
        patches = self.encoder_patches(patch_pool(h, ids_enc, P)).reshape(B, P * k, -1)
        patches = self.encoder_cross(patches, h, enc_mask).reshape(B, P, -1)
        g = self.global_stack.run(patches if self.global_in is None else self.global_in(patches))
        memory = self.decoder_patches(g).reshape(B, P * k, -1)
        for cross, layer in zip(self.decoder_cross, self.decoder_layers):
            h = layer.run(cross(h, memory, dec_mask), mask)
        return self.ln_final(h)


def _attending_to_nothing(stack: Stack, x: torch.Tensor) -> torch.Tensor:
    """A padded byte's states through the local encoder: its attention row is all masked, which transformers' SDPA
    answers with zeros, so each block adds its FFN alone (BltTransformerLayer: x + 0, then x + mlp(norm(x)))."""
    for block in stack.blocks:
        x = x + block.mlp(block.ln2(x))
    return x
