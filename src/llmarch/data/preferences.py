"""Preference data for DPO: a .jsonl of {"prompt", "chosen", "rejected"} (the prompt a string, read as one user
turn, or a list of messages), or the default set from the embedded corpus: the SFT task's function sources
(data/sft.py), its own docstring line chosen over the line of another function of the same split."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..errors import LlmarchError
from .chat import check_messages
from .corpus import jsonl_records
from .sft import stdlib_summary_task
from .split import check_task_source, val_groups


@dataclass(frozen=True)
class Preference:
    prompt: tuple  # messages before the answer
    chosen: str
    rejected: str

    def conversation(self, answer: str) -> list[dict]:
        return [*self.prompt, {"role": "assistant", "content": answer}]


@dataclass
class Preferences:
    train: list[Preference]
    val: list[Preference]


def _read(path: Path) -> list[Preference]:
    if not path.is_file():
        raise LlmarchError(f"{path} is not a file")
    out = []
    for n, row in jsonl_records(path):
        prompt, chosen, rejected = row.get("prompt"), row.get("chosen"), row.get("rejected")
        if not (isinstance(chosen, str) and isinstance(rejected, str) and chosen and rejected):
            raise LlmarchError(f"{path}:{n}: expected non-empty string fields 'chosen' and 'rejected'")
        if isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        if not isinstance(prompt, list):
            raise LlmarchError(f"{path}:{n}: 'prompt' must be a string or a list of messages")
        check_messages(prompt + [{"role": "assistant", "content": chosen}], f"{path}:{n}")
        out.append(Preference(tuple(prompt), chosen, rejected))
    return out


def _default() -> list[tuple[str, Preference]]:
    """(source file, pair): each conversation's answer chosen over the answer of the conversation half the list
    away (another file's function, almost always): deterministic, and never the same text."""
    task = stdlib_summary_task()
    out = []
    for i, (group, (user, assistant)) in enumerate(task):
        other = task[(i + len(task) // 2) % len(task)][1][1]["content"]
        if other != assistant["content"]:
            out.append((group, Preference((user,), assistant["content"], other)))
    return out


def load_preferences(source: str | None, val_fraction: float) -> Preferences:
    check_task_source(source, val_fraction, "prompt, chosen, rejected")
    if source is None:
        items = _default()
    else:
        items = [(str(i), p) for i, p in enumerate(_read(Path(source)))]
    val = val_groups(Counter(g for g, _ in items), val_fraction)
    data = Preferences([p for g, p in items if g not in val], [p for g, p in items if g in val])
    if not data.train or not data.val:
        raise LlmarchError(f"{len(items)} preference pairs are too few to split into training and validation")
    return data
