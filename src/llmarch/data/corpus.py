"""Where text comes from: the embedded default corpus (this interpreter's own standard-library source,
several MB of real text on every machine with Python), a text file, a directory, a glob, or a .jsonl file
with a `text` field. Documents come back in a deterministic (sorted) order."""
from __future__ import annotations

import glob as globlib
import json
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import LlmarchError, first_and_count, warn

DEFAULT = "stdlib"
# Test suites and vendored tools are left out: they are large, repetitive and not ordinary library code.
_SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "turtledemo", "site-packages", "dist-packages", "__pycache__"}


@dataclass(frozen=True)
class Document:
    name: str
    text: str
    # token ids taken as they are (a .jsonl record's "ids"), for a run given the tokenizer that made them: text a
    # model decoded, tokenized again, is not always the tokens it chose (a draft distilled on them must see those)
    ids: tuple[int, ...] | None = None


def stdlib_documents() -> list[Document]:
    root = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("test"))
        for name in sorted(filenames):
            if name.endswith(".py"):
                path = Path(dirpath) / name
                text = _read_text(path)
                if text:
                    docs.append(Document(str(path.relative_to(root)), text))
    if not docs:
        raise LlmarchError(f"no standard-library sources found under {root}")
    return docs


def _read_text(path: Path, skipped: list[str] | None = None) -> str | None:
    """The file's text, or None for a file that is not UTF-8 (binary, or another encoding), which `skipped`
    records with the offset of its first bad byte."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        if skipped is not None:
            skipped.append(f"{path} (byte {e.start})")
        return None
    except OSError as e:
        raise LlmarchError(f"cannot read {path}: {e.strerror}") from None


def jsonl_records(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, record) for each non-blank line of a .jsonl file; a line that is not a JSON object is
    a one-line error naming it."""
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise LlmarchError(f"{path}:{i}: not valid JSON ({e.msg})") from None
            if not isinstance(record, dict):
                raise LlmarchError(f"{path}:{i}: expected a JSON object")
            yield i, record


def _jsonl_documents(path: Path) -> list[Document]:
    docs = []
    for i, record in jsonl_records(path):
        ids = record.get("ids")
        if ids is not None:
            if not (isinstance(ids, list) and ids and all(type(t) is int and t >= 0 for t in ids)):
                raise LlmarchError(f"{path}:{i}: 'ids' must be a non-empty list of token ids (integers >= 0)")
            ids = tuple(ids)
        elif not isinstance(record.get("text"), str):
            raise LlmarchError(f"{path}:{i}: expected an object with a string field 'text' (or a list 'ids' of "
                               "token ids)")
        docs.append(Document(f"{path.name}:{i}", str(record.get("text", "")), ids))
    return docs


def _file_documents(path: Path, skipped: list[str]) -> list[Document]:
    if path.suffix == ".jsonl":
        try:
            return _jsonl_documents(path)
        except UnicodeDecodeError as e:
            skipped.append(f"{path} (byte {e.start})")
            return []
    text = _read_text(path, skipped)
    return [Document(str(path), text)] if text else []


def check_source(source: str | None) -> None:
    """The error read_documents gives for a source that does not exist, without reading anything (a launcher
    checks this once rather than each of its processes)."""
    if source not in (None, DEFAULT) and not Path(source).exists() and not any(c in source for c in "*?["):
        raise LlmarchError(f"data {source!r} does not exist")


def read_documents(source: str | None = None) -> list[Document]:
    """Documents of a data source: None or 'stdlib', a file, a directory (recursively) or a glob."""
    check_source(source)
    if source in (None, DEFAULT):
        return stdlib_documents()
    path = Path(source)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
                       and "__pycache__" not in p.relative_to(path).parts)  # compiled bytecode is not text
    else:  # a glob
        files = sorted(Path(p) for p in globlib.glob(source, recursive=True) if Path(p).is_file())
    skipped: list[str] = []
    docs = [d for f in files for d in _file_documents(f, skipped)]
    if not docs or not any(d.text or d.ids for d in docs):
        bad = f"; not UTF-8: {first_and_count(skipped)}" if skipped else ""
        raise LlmarchError(f"data {source!r} holds no UTF-8 text{bad}")
    if skipped:  # one stray byte must not drop a file without a word
        warn(f"skipped {len(skipped)} of {len(files)} file(s) of {source!r} that are not UTF-8 text: "
             f"{first_and_count(skipped)}")
    return docs
