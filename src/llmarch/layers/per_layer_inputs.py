"""Per-layer input embeddings (PLE; Gemma 3n, Gemma Team 2025; Gemma 4's E2B and E4B): besides the token
embedding, every token gets a small vector per layer, which each block gates into its residual stream after its FFN.
The vector of layer l mixes what the token is with where it stands (transformers' get_per_layer_inputs and
project_per_layer_inputs):
    e_l = E_ple[id][l] · sqrt(P)                             a table of P dims per layer, L·P per token
    c_l = RMSNorm((x₀ W_proj)[l] · d^-1/2)                   x₀ the scaled token embedding (B, T, d)
    p_l = (c_l + e_l) · 2^-1/2
ids past a table smaller than the vocabulary (ple_vocab) read its row 0, as Gemma 3n's get_per_layer_inputs does, and
so do the placeholder_ids (Gemma 4's image and audio tokens, read as its padding token, 0).
and block l adds x ← x + RMSNorm(act(x W_gate) ⊙ p_l W_up) (layers/block.py), act the FFN's activation.
Shapes: B batch, T tokens, L layers, P = ple_dim, d = d_model."""
from __future__ import annotations

import torch
from torch import nn

from .linear import Linear
from .placeholders import as_padding
from .norms import make_norm


class PerLayerInputs(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.layers, self.dim = cfg.n_layers, cfg.ple_dim
        self.embed = nn.Embedding(cfg.ple_vocab or cfg.vocab_size, cfg.n_layers * cfg.ple_dim)
        self.rows = cfg.ple_vocab if (cfg.ple_vocab or cfg.vocab_size) < cfg.vocab_size else None
        self.pad_ids = cfg.placeholder_ids
        self.proj = Linear(cfg.d_model, cfg.n_layers * cfg.ple_dim, bias=False)
        self.norm = make_norm(cfg, cfg.ple_dim)

    def forward(self, ids: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """ids (B, T), x (B, T, d) the scaled token embeddings -> p (B, T, L, P)."""
        if self.rows is not None:
            ids = torch.where(ids < self.rows, ids, 0)
        e = self.embed(as_padding(ids, self.pad_ids))
        e = e * torch.tensor(self.dim ** 0.5, dtype=e.dtype)  # sqrt(P) rounded to the table's dtype, as HF does
        c = self.proj(x) * x.shape[-1] ** -0.5
        c = self.norm(c.unflatten(-1, (self.layers, self.dim)))
        return (c + e.unflatten(-1, (self.layers, self.dim))) * 2 ** -0.5
