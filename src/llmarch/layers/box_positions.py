"""2-D position embeddings of each token's bounding box on a page (LayoutLM; Xu et al. 2020, "LayoutLM: Pre-training
of Text and Layout for Document Image Understanding", §2.2): learned tables for x and y coordinates and for the box's
height and width, added to the input embeddings beside the 1-D positions and token types. A box (x0, y0, x1, y1) adds

    X[x0] + Y[y0] + X[x1] + Y[y1] + H[y1 - y0] + W[x1 - x0]

the left and right edges reading one x table, the top and bottom one y table. bbox: (B, T, 4) integer coordinates in
[0, box_vocab_size) (LayoutLM normalises pages to 0..1000); where a forward gives none, every box is (0, 0, 0, 0), as
transformers fills it."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import LlmarchError


class BoxEmbeddings(nn.Module):
    def __init__(self, n: int, width: int):
        super().__init__()
        self.x, self.y, self.h, self.w = (nn.Embedding(n, width) for _ in range(4))

    def forward(self, bbox: torch.Tensor) -> torch.Tensor:
        """bbox (B, T, 4) as (x0, y0, x1, y1) -> (B, T, C)."""
        if bbox.dim() != 3 or bbox.shape[-1] != 4:
            raise LlmarchError(f"bbox must have shape (batch, seq, 4): (x0, y0, x1, y1) per token, got "
                               f"{tuple(bbox.shape)}")
        x0, y0, x1, y1 = bbox.unbind(-1)  # (B, T) each
        return self.x(x0) + self.y(y0) + self.x(x1) + self.y(y1) + self.h(y1 - y0) + self.w(x1 - x0)

    def origin(self) -> torch.Tensor:
        """(C,) the embedding of the box (0, 0, 0, 0), for a forward given no boxes."""
        return 2 * self.x.weight[0] + 2 * self.y.weight[0] + self.h.weight[0] + self.w.weight[0]
