"""Several token-type tables and positions that restart at each table cell (TAPAS; Herzig et al. 2020, "TaPas:
Weakly Supervised Table Parsing via Pre-training", §2 and Fig. 2). A flattened table reaches the encoder as words,
each with K type ids (B, T, K): TAPAS's seven are segment (question or table), column, row, previous answer, column
rank, inverse column rank and numeric relation. Each column of ids indexes a table of its own (`type_vocab_sizes`),
all added to the input embeddings. With `position_reset_types` (transformers' reset_position_index_per_cell, the
"relative positions" of Herzig et al.'s later releases), the tokens sharing the ids of those columns (TAPAS: column
and row, one cell) count their positions from the cell's first token. (transformers clips them at the position
table's last row, which a position from the cell's start cannot pass where the sequence fits the table.)"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import LlmarchError


class TypeTables(nn.Module):
    def __init__(self, sizes: list, width: int):
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(n, width) for n in sizes)

    def forward(self, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        """token_type_ids (B, T, K) -> (B, T, C) the sum of the K tables' rows; None: every id 0, (C,)."""
        if token_type_ids is None:
            return sum(t.weight[0] for t in self.tables)
        self._check(token_type_ids)
        return sum(t(token_type_ids[..., k]) for k, t in enumerate(self.tables))

    def cell_positions(self, pos: torch.Tensor, token_type_ids: torch.Tensor, columns: list) -> torch.Tensor:
        """pos (B, T) positions; the tokens of one cell (equal ids in each of `columns` of token_type_ids (B, T, K))
        count from the cell's first position, as transformers' TapasEmbeddings: p - min_cell(p)."""
        self._check(token_type_ids)
        ids = token_type_ids[..., columns]  # (B, T, R)
        same = (ids[:, :, None, :] == ids[:, None, :, :]).all(-1)  # (B, T, T): token t and t' in one cell
        first = torch.where(same, pos[:, None, :], torch.iinfo(pos.dtype).max).amin(-1)  # (B, T)
        return pos - first

    def _check(self, token_type_ids: torch.Tensor) -> None:
        k = len(self.tables)
        if token_type_ids.dim() != 3 or token_type_ids.shape[-1] != k:
            raise LlmarchError(f"token_type_ids must have shape (batch, seq, {k}) for this model's {k} token-type "
                               f"tables, got {tuple(token_type_ids.shape)}")


def check_table_types(cfg) -> None:
    if cfg.type_vocab_sizes is not None:
        if not cfg.type_vocab_sizes or not all(_whole(n) and n > 0 for n in cfg.type_vocab_sizes) \
                or cfg.type_vocab_size:
            raise LlmarchError("type_vocab_sizes needs positive table sizes, and type_vocab_size 0 (one table)")
    if cfg.position_reset_types is not None:
        k = len(cfg.type_vocab_sizes or ())
        if not cfg.position_reset_types or any(not _whole(c) or not 0 <= c < k for c in cfg.position_reset_types) \
                or cfg.positions != "learned" or cfg.position_offset:
            raise LlmarchError("position_reset_types names columns of type_vocab_sizes' token types, and needs "
                               "learned positions from 0")


def _whole(n) -> bool:
    return isinstance(n, int) and not isinstance(n, bool)
