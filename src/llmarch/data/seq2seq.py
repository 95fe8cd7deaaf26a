"""Supervised sequence-to-sequence data: (source text, target text) pairs from a .jsonl file of
{"source": ..., "target": ...}, or the default task built from the embedded corpus, and their padded batches.

The default task names a function from its docstring: source = the summary (first paragraph, whitespace
collapsed, cut to MAX_SOURCE_CHARS at a word) of a standard-library function's docstring, target = the
function's name ("Set a cookie if policy says it's OK to do so." -> "set_cookie_if_ok"). To keep it
learnable but not trivial:
- only names whose every part (split at "_") is a word of the summary are kept, about a third of the
  documented functions: the answer can then be read from the input, by choosing, ordering and joining the
  right words, where a name built from words the summary lacks ("Return the number of Thread objects
  currently alive." -> "active_count") could only be guessed;
- names starting with "_" are left out: dunder names are fixed by protocol with stock docstrings ("Return
  repr(self)."), and whether a helper is private is not in its docstring;
- identical pairs are kept once (the first in file order: a copy in another file would leak across the split),
  and a summary given to several different names ("**DEPRECATED**", an alias's shared docstring) is left out,
  since no model could tell which is meant.
The split is grouped by source file (no file has pairs on both sides) and deterministic: whole files go to
validation in crc32 order of their names until validation has its share; a .jsonl file is split the same way
line by line, a fixed pseudo-random split."""
from __future__ import annotations

import ast
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import torch

from ..errors import LlmarchError
from .batching import IGNORE, pad
from .corpus import Document, jsonl_records, stdlib_documents
from .split import check_task_source, val_groups

MAX_SOURCE_CHARS = 300


@dataclass(frozen=True)
class Pair:
    source: str
    target: str
    group: str  # pairs of one group land on the same side of the split


@dataclass
class Seq2SeqData:
    train: list[tuple[str, str]]
    val: list[tuple[str, str]]

    @property
    def trivial_baseline(self) -> float:
        """Validation exact-match of always answering the most common training target."""
        guess = Counter(t for _, t in self.train).most_common(1)[0][0]
        return exact_match([guess] * len(self.val), [t for _, t in self.val])


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Fraction of predictions equal to their reference, ignoring leading and trailing whitespace."""
    if len(predictions) != len(references) or not references:
        raise LlmarchError(f"exact match needs as many predictions as references (> 0), got "
                           f"{len(predictions)} and {len(references)}")
    return sum(p.strip() == r.strip() for p, r in zip(predictions, references)) / len(references)


def _summary(docstring: str) -> str:
    text = " ".join(docstring.split("\n\n")[0].split())
    return text if len(text) <= MAX_SOURCE_CHARS else text[:MAX_SOURCE_CHARS].rsplit(" ", 1)[0]


def _named_from(summary: str, name: str) -> bool:
    """Every part of the name (split at "_") is a word of the summary, case ignored."""
    words = set(re.findall(r"[a-z0-9]+", summary.lower()))
    parts = [p for p in name.lower().split("_") if p]
    return bool(parts) and all(p in words for p in parts)


def _documented_functions(doc: Document) -> list[Pair]:
    try:
        tree = ast.parse(doc.text)
    except (SyntaxError, ValueError):
        return []  # a file this interpreter cannot parse holds no functions we can read
    out = []
    functions = (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
    for node in sorted(functions, key=lambda n: (n.lineno, n.col_offset)):  # in file order
        if not node.name.startswith("_"):
            summary = _summary(ast.get_docstring(node) or "")
            if summary and _named_from(summary, node.name):
                out.append(Pair(summary, node.name, doc.name))
    return out


def docstring_name_task(docs: list[Document]) -> list[Pair]:
    """The default task's pairs from these documents, in document order (see the module docstring)."""
    pairs = [p for d in docs for p in _documented_functions(d)]
    names = defaultdict(set)
    for p in pairs:
        names[p.source].add(p.target)
    seen, out = set(), []
    for p in pairs:
        if len(names[p.source]) == 1 and (p.source, p.target) not in seen:
            seen.add((p.source, p.target))
            out.append(p)
    return out


@lru_cache(maxsize=1)
def stdlib_docstring_task() -> tuple[Pair, ...]:
    """The default task on the embedded corpus; parsing every stdlib module takes seconds, so it is kept."""
    return tuple(docstring_name_task(stdlib_documents()))


def read_pairs(path: str | Path) -> list[tuple[str, str]]:
    """(source, target) pairs of a .jsonl file of {"source": str, "target": str}, both non-empty."""
    path = Path(path)
    if not path.is_file():
        raise LlmarchError(f"data {str(path)!r} does not exist")
    out = []
    for i, record in jsonl_records(path):
        source, target = record.get("source"), record.get("target")
        if not (isinstance(source, str) and isinstance(target, str) and source and target):
            raise LlmarchError(f"{path}:{i}: expected an object with non-empty string fields 'source' and 'target'")
        out.append((source, target))
    if not out:
        raise LlmarchError(f"{path} holds no source/target pairs")
    return out


def load_seq2seq(source: str | None = None, val_fraction: float = 0.1) -> Seq2SeqData:
    """The default task (None) or a .jsonl file of {source, target}, split into train and validation."""
    check_task_source(source, val_fraction, "source, target")
    if source is None:
        pairs = list(stdlib_docstring_task())
    else:
        pairs = [Pair(s, t, str(i)) for i, (s, t) in enumerate(read_pairs(source))]
    val = val_groups(Counter(p.group for p in pairs), val_fraction)
    data = Seq2SeqData([(p.source, p.target) for p in pairs if p.group not in val],
                       [(p.source, p.target) for p in pairs if p.group in val])
    if not data.train or not data.val:
        raise LlmarchError(f"{len(pairs)} pairs are too few to split into training and validation")
    return data


def seq2seq_batch(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int, decoder_start_id: int,
                  max_source: int, max_target: int) -> dict[str, torch.Tensor]:
    """Token-id pairs -> the encoder's input_ids and attention_mask (B, S), right-padded with pad_id, the
    decoder's inputs (B, T): decoder_start_id then the target shifted right by one (teacher forcing), and labels
    (B, T): the target, IGNORE at padding. Sources and targets are cut to max_source and max_target tokens (an
    EOS the caller appended is cut too when the target is longer)."""
    if not pairs:
        raise LlmarchError("a batch needs at least one pair")
    if max_source < 1 or max_target < 1:
        raise LlmarchError(f"max_source and max_target must be >= 1, got {max_source} and {max_target}")
    sources = [list(s)[:max_source] for s, _ in pairs]
    targets = [list(t)[:max_target] for _, t in pairs]
    input_ids, attention_mask = pad(sources, pad_id, left=False)  # (B, S)
    labels, _ = pad(targets, IGNORE, left=False)  # (B, T)
    decoder_input_ids, _ = pad([[decoder_start_id, *t[:-1]] for t in targets], pad_id, left=False)  # (B, T)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "decoder_input_ids": decoder_input_ids,
            "labels": labels}
