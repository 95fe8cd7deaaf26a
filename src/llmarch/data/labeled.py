"""Labeled text for fine-tuning: a .jsonl file of {"text": ..., "label": ...}, or the default task built from
the embedded corpus: which top-level standard-library package a snippet of code comes from. The split is
deterministic and stratified: within each class, whole groups (an example's source file for the default
task, so no file has snippets on both sides; its line for a .jsonl file) go to validation in crc32 order
until the class has its share there."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..errors import LlmarchError
from .corpus import jsonl_records, stdlib_documents
from .split import check_task_source, val_groups

MIN_MODULES = 10  # packages with at least this many modules become classes
SKIPPED = {"encodings"}  # codec tables: near-identical files, a giveaway rather than a task
SNIPPET_LINES = 8
MAX_PER_CLASS = 200


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    group: str  # examples of one group land on the same side of the split


@dataclass
class LabeledData:
    labels: list[str]  # class names; a class's id is its index
    train: list[tuple[str, int]]
    val: list[tuple[str, int]]

    def majority_baseline(self) -> float:
        """Validation accuracy of always answering the validation split's most common class: the best any
        constant answer can do (stricter than the training split's majority when the split is uneven)."""
        return Counter(y for _, y in self.val).most_common(1)[0][1] / len(self.val)


def stdlib_package_task() -> list[Example]:
    docs = [d for d in stdlib_documents() if "/" in d.name]
    modules = Counter(d.name.split("/")[0] for d in docs)
    packages = {p for p, n in modules.items() if n >= MIN_MODULES and p not in SKIPPED}
    by_package: dict[str, list[Example]] = {p: [] for p in packages}
    for d in docs:
        package = d.name.split("/")[0]
        if package not in packages:
            continue
        lines = [line for line in d.text.splitlines() if line.strip()]
        for i in range(0, len(lines) - SNIPPET_LINES + 1, SNIPPET_LINES):
            by_package[package].append(Example("\n".join(lines[i:i + SNIPPET_LINES]), package, d.name))
    out = []
    for package in sorted(by_package):
        examples = by_package[package]
        stride = max(1, len(examples) // MAX_PER_CLASS)  # evenly spaced through the package, in file order
        out.extend(examples[::stride][:MAX_PER_CLASS])
    return out


def read_jsonl_examples(path: str | Path) -> list[Example]:
    path = Path(path)
    if not path.is_file():
        raise LlmarchError(f"data {str(path)!r} does not exist")
    out = []
    for i, record in jsonl_records(path):
        label = record.get("label")
        if not (isinstance(record.get("text"), str) and isinstance(label, (str, int)) and not isinstance(label, bool)):
            raise LlmarchError(f"{path}:{i}: expected an object with a string 'text' and a string or integer 'label'")
        out.append(Example(record["text"], str(label), f"{path.name}:{i}"))
    return out


def load_labeled(source: str | None = None, val_fraction: float = 0.2) -> LabeledData:
    """The default task (None) or a .jsonl file, split into train and validation."""
    check_task_source(source, val_fraction, "text, label")
    examples = stdlib_package_task() if source is None else read_jsonl_examples(source)
    names = {e.label for e in examples}
    numeric = all(n.lstrip("-").isdigit() for n in names)  # integer labels keep their numeric order
    labels = sorted(names, key=int) if numeric else sorted(names)
    if len(labels) < 2:
        raise LlmarchError(f"classification needs at least 2 labels, found {len(labels)}")
    index = {name: i for i, name in enumerate(labels)}
    held_out = set()  # stratified: each label's groups are split on their own
    for label in labels:
        held_out |= {(label, g) for g in val_groups(Counter(e.group for e in examples if e.label == label),
                                                     val_fraction)}
    train, val = [], []
    for e in examples:
        side = val if (e.label, e.group) in held_out else train
        side.append((e.text, index[e.label]))
    if not train or not val:
        raise LlmarchError(f"{len(examples)} examples are too few to split into training and validation")
    return LabeledData(labels, train, val)
