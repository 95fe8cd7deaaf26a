"""The cross-attention of Aria's projector (Rhymes AI 2024, "Aria: An Open Multimodal Native Mixture-of-Experts
Model", arXiv 2410.05993, \u00a73.1; transformers' AriaCrossAttention, after the reference code's
aria/model/projector.py): a learned query per output feature attends to the tower's patch features,
    out = W (MHA(q = W_q LN_q(Q), k = W_k LN_kv(f), v = W_v LN_kv(f))) + b
where MHA is torch's nn.MultiheadAttention (its own q, k, v input projections with biases, an output projection),
the tower's head count, no positions and no residual; the padded patches of an image are masked out as keys. The
queries are the first patch_queries[P] rows of one learned table, P the image's patch count (padding included), so
an image becomes that many features whatever is in it. projector.py's cross_attention projector follows it with
norm_mlp. Shapes: N images, P patches, Q queries, C the tower's width."""
from __future__ import annotations

import torch
from torch import nn

from ..layers.linear import Linear
from ..layers.norms import LayerNorm
from .config import VisionConfig


class QueryCrossAttention(nn.Module):
    def __init__(self, v: VisionConfig):
        super().__init__()
        self.v, C = v, v.feature_width
        self.query = nn.Parameter(torch.zeros(max(q for _, q in v.patch_queries), C))
        self.norm_q, self.norm_kv = LayerNorm(C, eps=v.projector_eps), LayerNorm(C, eps=v.projector_eps)
        self.q_proj, self.k_proj, self.v_proj = (Linear(C, C, bias=False) for _ in range(3))
        self.attn = nn.MultiheadAttention(C, v.n_heads, batch_first=True)
        self.linear = Linear(C, C)

    def forward(self, f: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        """f (N, P, C) the patch features, real bool (N, P) the patches that are (None: all) -> (N, Q, C)."""
        N, P, _ = f.shape
        queries = self.query[:self.v.queries_for(P)].expand(N, -1, -1)  # (N, Q, C)
        mask = None
        if real is not None:  # True where a key is masked, one (Q, P) mask per image and head, image-major
            mask = (~real).repeat_interleave(self.v.n_heads, 0)[:, None].expand(-1, queries.shape[1], -1)
        kv = self.norm_kv(f)
        out, _ = self.attn(self.q_proj(self.norm_q(queries)), self.k_proj(kv), self.v_proj(kv), attn_mask=mask,
                           need_weights=False)
        return self.linear(out)
