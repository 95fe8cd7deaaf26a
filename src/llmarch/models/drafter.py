"""A drafter that reads its target's states (config draft_target_width; Gemma 4's assistants, transformers'
Gemma4AssistantForCausalLM): a multi-token-prediction head for speculative decoding, not a language model of its
own. Given the target's embedding e of the last token and the target's final hidden state h before it, it computes

    x = W_pre [e; h]                      (B, 1, 2 W) -> (B, 1, C)
    x = blocks(x), each layer's queries over the target's keys and values (no keys or values of its own)
    y = norm(x);  logits = head(y);  h' = W_post y   (B, 1, W): the next draft step's h

and drafts the next tokens from one position, feeding [embed(drafted token); h'] back (generate/assistant.py).
Each layer reads the keys and values of the target's last layer of its own attention kind, the target's rotated and
normalised keys as its cache holds them: a full layer all the slots the target has read, a sliding layer the last
sliding_window + 1 of them (transformers' bidirectional window |i - j| <= w, flipped to look back from the last
slot). The head is the tied embedding table, or with draft_centroids a masked one: the best top_k of the clusters
(centroids . y) give their tokens' logits, every other token gets the minimum of those minus 1."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import LlmarchError
from ..layers import POSITIONS
from ..layers.attention import AttentionContext
from ..layers.block import Block
from ..layers.linear import Linear
from ..layers.norms import make_norm


@dataclass
class DraftOutput:
    logits: torch.Tensor  # (B, 1, V): the next token's
    hidden_states: torch.Tensor  # (B, 1, W): post_projection's state, the next draft step's input


class CentroidHead(nn.Module):
    """Logits for the tokens of the top_k clusters of the best centroid scores, in the order token_order lists the
    vocabulary cluster by cluster (Gemma4AssistantMaskedEmbedder)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.top_k, self.n = cfg.draft_centroid_top_k, cfg.draft_centroids
        self.centroids = Linear(cfg.d_model, cfg.draft_centroids, bias=False)
        self.register_buffer("token_order", torch.zeros(cfg.vocab_size, dtype=torch.long))

    def forward(self, y: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """y (B, T, C), table (V, C) -> logits (B, T, V)."""
        clusters = self.centroids(y).topk(self.top_k, dim=-1).indices  # (B, T, k)
        ids = self.token_order.view(self.n, -1)[clusters].flatten(-2)  # (B, T, k * V / n)
        scores = (y.unsqueeze(-2) @ table[ids].transpose(-1, -2)).squeeze(-2)  # (B, T, k * V / n)
        out = torch.full((*y.shape[:-1], table.shape[0]), scores.min().item() - 1.0, dtype=y.dtype, device=y.device)
        return out.scatter(-1, ids, scores)


class DrafterLM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)  # the tied head's table (no input reads it)
        self.pre_proj = Linear(2 * cfg.draft_target_width, cfg.d_model, bias=False)
        # every layer's mask is the drafter's own (masks below): its attention the full kind, over a mask
        self.blocks = nn.ModuleList(Block(cfg.for_layer(i).replace(attention="full", sliding_window=None), layer=i)
                                    for i in range(cfg.n_layers))
        self.block_order = None  # each layer its own block (as a Stack's, which analysis/accounting.py reads)
        self._types = [cfg.layer_type(i) for i in range(cfg.n_layers)]
        self._windows = [cfg.for_layer(i).sliding_window for i in range(cfg.n_layers)]
        self.positions = POSITIONS[cfg.positions](cfg)
        self.layer_positions = nn.ModuleDict()  # each layer type's rotary tables (Gemma 4: p-RoPE on the full layers)
        for t in dict.fromkeys(t for t in self._types if t is not None):
            lc = cfg.for_layer(self._types.index(t))
            self.layer_positions[t] = POSITIONS[lc.positions](lc)
        self.ln_final = make_norm(cfg)
        self.lm_head = Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tied_head:
            self.lm_head.weight = self.embed.weight
        self.post_proj = Linear(cfg.d_model, cfg.draft_target_width, bias=False)
        self.centroid_head = CentroidHead(cfg) if cfg.draft_centroids else None

    def setup_cache(self, *args, **kwargs) -> None:
        raise LlmarchError(f"{self.config.name} is a drafter that reads its target's states: it decodes as "
                           "generate(target, ..., draft=it), not on its own")

    def cache_bytes(self) -> tuple[int, int]:
        """(per token, per sequence) of its own decode state: none, it reads its target's (model_facts)."""
        return 0, 0

    def kinds(self) -> list[str]:
        """Each layer's attention kind ('full' or 'sliding_window'): whose keys and values of the target it reads."""
        return ["full" if w is None else "sliding_window" for w in self._windows]

    def forward(self, inputs: torch.Tensor, kv: dict, kv_len: int, positions: torch.Tensor,
                pad_mask: torch.Tensor | None = None) -> DraftOutput:
        """inputs (B, 1, 2 W): [the target's embedding of the last token; the target's state]; kv: attention kind ->
        the target's (keys, values) (B, K, S, D) of its last layer of that kind; kv_len: slots 0..kv_len-1 hold
        what the target has read; positions (B, 1): the last token's position; pad_mask (B, S) bool: real slots."""
        if inputs.dim() != 3 or inputs.shape[1] != 1 or inputs.shape[2] != 2 * self.config.draft_target_width:
            raise LlmarchError(f"a drafter reads one position per row, (B, 1, {2 * self.config.draft_target_width}), "
                               f"got {tuple(inputs.shape)}")
        x = self.pre_proj(inputs)
        slots = torch.arange(kv_len, device=x.device)
        real = None if pad_mask is None else pad_mask[:, :kv_len].bool()
        shared, ctxs = {}, {}
        for i, (kind, t, w) in enumerate(zip(self.kinds(), self._types, self._windows)):
            k, v = kv[kind]
            shared[i] = k[:, :, :kv_len], v[:, :, :kv_len]
            if (t, w) not in ctxs:
                mask = None if w is None else slots >= kv_len - (w + 1)  # the last w + 1 slots
                mask = real if mask is None else mask[None] if real is None else real & mask
                positions_t = self.layer_positions[t] if t in self.layer_positions else self.positions
                ctxs[t, w] = AttentionContext(mask=None if mask is None else mask[:, None, None, :], causal=False,
                                              rope=positions_t.rotary(positions), input_pos=slots[:1],
                                              shared_kv=shared)
        for block, t, w in zip(self.blocks, self._types, self._windows):
            x = block(x, ctxs[t, w])
        y = self.ln_final(x)
        head = self.centroid_head
        logits = self.lm_head(y) if head is None else head(y, self.lm_head.weight)
        return DraftOutput(logits=logits, hidden_states=self.post_proj(y))
