"""Placeholder token ids read as the padding token (config placeholder_ids): Gemma4Model replaces its image, video
and audio tokens by the pad token, id 0, before both its token embedding and its per-layer inputs look them up; the
features written at those positions afterwards (vision/, audio/) are the model's only reading of them."""
from __future__ import annotations

import torch


def as_padding(ids: torch.Tensor, placeholder_ids: list[int] | None) -> torch.Tensor:
    """ids (B, T) with every placeholder id replaced by 0; ids as they are without placeholders."""
    if not placeholder_ids:
        return ids
    return ids.masked_fill(torch.isin(ids, torch.tensor(placeholder_ids, device=ids.device)), 0)
