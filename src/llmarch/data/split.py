"""A deterministic grouped split: whole groups (source files) go to validation in crc32 order of their names,
so no group is on both sides and the split never changes between runs or machines."""
from __future__ import annotations

import zlib

from ..errors import LlmarchError


def val_groups(sizes: dict[str, int], val_fraction: float) -> set[str]:
    """Groups for validation, each taken while it brings the validation share nearer to val_fraction of all
    items (sizes: items per group)."""
    taken, target, chosen = 0, val_fraction * sum(sizes.values()), set()
    for group in sorted(sizes, key=lambda g: zlib.crc32(g.encode())):
        if taken + sizes[group] / 2 > target:
            break
        chosen.add(group)
        taken += sizes[group]
    return chosen


def check_task_source(source: str | None, val_fraction: float, fields: str) -> None:
    """A fine-tuning task's --data (None: the default task, or a .jsonl of `fields`) and its split share."""
    if not 0 < val_fraction < 1:
        raise LlmarchError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if source is not None and not str(source).endswith(".jsonl"):
        raise LlmarchError(f"task data must be a .jsonl file of {{{fields}}}, got {source!r}")
