"""Perceiver IO's masked language model (Jaegle et al. 2021, "Perceiver IO: A General Architecture for Structured
Inputs & Outputs", §2 and §4.1: the byte-level model deepmind/language-perceiver), as transformers'
PerceiverForMaskedLM computes it:

    x = E[ids] + P[0..T-1]          (B, T, C)  token embeddings and learned positions
    z = encode(Z, x)                (B, N, L)  the N learned latents Z read the inputs (padding masked)
    z = latent stack(z)             (B, N, L)  n_layers self-attention blocks over the latents, whose layer_groups
                                               blocks of weights repeat in order (layer_groups_cyclic)
    y = decode(Q[0..T-1], z)        (B, T, C)  a learned query per position reads the latents
    logits = y E^T + b                         the embedding matrix transposed, plus a bias

encode and decode are cross-attention blocks (layers/cross_block.py), the latent stack a Stack (models/stack.py)
without positions or final norm: attention costs O(T N) per cross block and O(N^2) per latent layer, not O(T^2).
transformers answers all of its max_position_embeddings queries; these are the first T, the inputs' (a query reads
the latents alone, so they are the same)."""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..layers import POSITIONS
from ..layers.cross_block import CrossBlock
from ..layers.linear import Linear
from .init import init_weights
from .stack import Stack, check_ids
from .transformer import ModelOutput


def part_config(cfg: ModelConfig, part: str) -> ModelConfig:
    """The config of the latent stack ('latents': cfg with latent_parts['latents']) or of the encoding
    cross-attention ('encode': latent_parts['encode'], as wide as the latents); the decoding one's is cfg. A part that
    sets n_heads and not n_kv_heads has one key/value head per head."""
    latents = cfg.latent_parts["latents"]
    own = dict(latents) if part == "latents" else {"d_model": latents.get("d_model", cfg.d_model),
                                                   **cfg.latent_parts["encode"]}
    if "n_heads" in own:
        own.setdefault("n_kv_heads", own["n_heads"])
    return cfg.replace(n_latents=0, latent_parts=None, positions="none", **own)


class PerceiverLM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        lc = part_config(cfg, "latents")
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.positions = POSITIONS[cfg.positions](cfg)  # the inputs' (context_length, C)
        self.latents = nn.Parameter(torch.zeros(cfg.n_latents, lc.d_model))
        self.encoder_cross = CrossBlock(part_config(cfg, "encode"), cfg.d_model)
        self.latent_stack = Stack(lc)
        self.query_positions = POSITIONS[cfg.positions](cfg)  # the decoder's queries, one per position
        self.decoder_cross = CrossBlock(cfg, lc.d_model)
        self.lm_head = Linear(cfg.d_model, cfg.vocab_size, bias=cfg.head_bias)
        if cfg.tied_head:
            self.lm_head.weight = self.embed.weight
        if self.embed.weight.device.type != "meta":
            self.reset_parameters()

    def reset_parameters(self) -> None:
        init_weights(self, self.config)

    def stacks(self) -> dict[str, tuple[Stack, ModelConfig]]:
        """The stack of blocks (build.stacks) with the config it was built from."""
        return {"latents": (self.latent_stack, part_config(self.config, "latents"))}

    def stack_rows(self, context: int) -> dict[str, float]:
        """Rows per input token of each stack at `context` inputs (analysis/accounting.py): the latent stack runs
        over n_latents rows whatever the input length."""
        return {"latents": self.config.n_latents / context}

    def outside_macs(self, context: int) -> tuple[int, float]:
        """(the parameters outside the stacks, their multiply-adds per input token at `context` inputs): the
        encoding cross-attention's N latents over the inputs, the decoding one's query per input over the N latents;
        the latents and the position tables are read, not multiplied by."""
        N = self.config.n_latents
        parts = (self.latents, self.positions, self.query_positions, self.encoder_cross, self.decoder_cross)
        held = sum(p.numel() for part in parts for p in ([part] if isinstance(part, nn.Parameter)
                                                         else part.parameters()))
        return held, (self.encoder_cross.macs(N, context) + self.decoder_cross.macs(context, N)) / context

    def cache_bytes(self) -> tuple[int, int]:
        """(bytes per token, bytes per sequence) of the decode state (analysis/accounting.py): none, a masked LM."""
        return 0, 0

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> ModelOutput:
        """input_ids (B, T), attention_mask (B, T) 1 at real tokens -> logits (B, T, V) at every position."""
        if not torch.compiler.is_compiling():
            check_ids(input_ids, self.config, None)
        B, T = input_ids.shape
        pos = torch.arange(T, device=input_ids.device)
        x = self.embed(input_ids) + self.positions.embed(pos)  # (B, T, C)
        z = self.encoder_cross(self.latents.expand(B, -1, -1), x, attention_mask)  # (B, N, L)
        z = self.latent_stack.run(z)
        y = self.decoder_cross(self.query_positions.embed(pos).expand(B, -1, -1), z)  # (B, T, C)
        return ModelOutput(logits=self.lm_head(y), hidden_states=y)
