"""Supervised fine-tuning data: conversations (a .jsonl of {"messages": [...]}, or the default task from the
embedded corpus), split by group, tokenized through the chat template with the assistant's tokens marked
(chat.py), and packed into rows of a fixed length. The default task: given a standard-library function's
source (its docstring removed), answer with the docstring's first line.

A packed row holds several conversations one after another, numbered by document_ids so that attention and
positions stay within each (models/masks.py); its targets are the next tokens that the assistant wrote in the
same conversation, IGNORE elsewhere (the prompt, the first token of each conversation, padding)."""
from __future__ import annotations

import ast
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import torch

from ..errors import LlmarchError
from .batching import IGNORE, pad
from .chat import load_conversations
from .corpus import Document, stdlib_documents
from .split import check_task_source, val_groups

MAX_CODE_CHARS = 600
PROMPT = "Summarize this Python function in one line.\n\n"


@dataclass
class Conversations:
    train: list[list[dict]]
    val: list[list[dict]]


def _first_line(docstring: str | None) -> str | None:
    line = (docstring or "").strip().split("\n")[0].strip()
    return line if 10 <= len(line) <= 120 else None


def _function_conversations(doc: Document) -> list[list[dict]]:
    try:
        tree = ast.parse(doc.text)
    except (SyntaxError, ValueError):
        return []
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.name.startswith("_"):
            continue
        summary = _first_line(ast.get_docstring(node))
        if summary is None:
            continue
        body = node.body[1:] or [ast.Pass()]  # without its docstring: the answer is not in the question
        code = ast.unparse(ast.fix_missing_locations(type(node)(**{**node.__dict__, "body": body})))
        if len(code) <= MAX_CODE_CHARS:
            out.append([{"role": "user", "content": PROMPT + code}, {"role": "assistant", "content": summary}])
    return out


@lru_cache(maxsize=1)
def stdlib_summary_task() -> tuple[tuple[str, tuple], ...]:
    """(source file, conversation) of the default task; parsing the standard library takes seconds, so kept."""
    return tuple((doc.name, tuple(c)) for doc in stdlib_documents() for c in _function_conversations(doc))


def load_sft(source: str | None, val_fraction: float) -> Conversations:
    """The default task (None; whole source files on either side of the split) or a .jsonl of conversations."""
    check_task_source(source, val_fraction, "messages")
    if source is None:
        items = [(group, list(c)) for group, c in stdlib_summary_task()]
    else:
        items = [(str(i), c) for i, c in enumerate(load_conversations(source))]
    val = val_groups(Counter(g for g, _ in items), val_fraction)
    data = Conversations([c for g, c in items if g not in val], [c for g, c in items if g in val])
    if not data.train or not data.val:
        raise LlmarchError(f"{len(items)} conversations are too few to split into training and validation")
    return data


def targets(ids: list[int], assistant: list[bool]) -> list[int]:
    """Position t's target: token t+1 where the assistant wrote it, else IGNORE."""
    return [nxt if mine else IGNORE for nxt, mine in zip(ids[1:], assistant[1:])] + [IGNORE]


def scored(example: tuple[list[int], list[bool]]) -> bool:
    """Whether a (cut) conversation still has a token to predict: an assistant token after the first."""
    return any(example[1][1:])


def keep_scored(examples: list, what: str, length: int) -> tuple[list, int]:
    """The examples with something left to predict after the cut to `length` tokens (each an (ids, mask), or a
    tuple of them, every one of which must be scored), and how many were dropped; none left is an error."""
    kept = [e for e in examples if all(scored(x) for x in (e if isinstance(e[0], tuple) else (e,)))]
    if examples and not kept:
        raise LlmarchError(f"no {what} keeps an assistant token within --max-length {length}: nothing to train on")
    return kept, len(examples) - len(kept)


def pack(lengths: list[int], length: int) -> list[list[int]]:
    """Indices of examples per row, in order, each row holding at most `length` tokens (an example is never
    split: the caller cuts longer ones to `length`)."""
    rows, current, used = [], [], 0
    for i, n in enumerate(lengths):
        if current and used + n > length:
            rows.append(current)
            current, used = [], 0
        current.append(i)
        used += n
    return rows + ([current] if current else [])


def packed_rows(rows: list[list[tuple[list[int], list[bool]]]], length: int, pad_id: int):
    """Rows of (ids, assistant mask) examples -> (inputs {input_ids, document_ids} (B, length), labels (B, length)).
    Padding at a row's end is one more document of its own."""
    ids, docs, labels = [], [], []
    for row in rows:
        r_ids, r_docs, r_labels = [], [], []
        for k, (x, m) in enumerate(row):
            r_ids += x
            r_docs += [k] * len(x)
            r_labels += targets(x, m)
        fill = length - len(r_ids)
        ids.append(r_ids + [pad_id] * fill)
        docs.append(r_docs + [len(row)] * fill)
        labels.append(r_labels + [IGNORE] * fill)
    return ({"input_ids": torch.tensor(ids), "document_ids": torch.tensor(docs)}, torch.tensor(labels))


def padded_rows(examples: list[tuple[list[int], list[bool]]], pad_id: int):
    """One example a row, right-padded: (inputs {input_ids, attention_mask} (B, T), labels (B, T)); for models
    whose mixers cannot keep packed documents apart (recurrent state, sliding windows)."""
    ids, mask = pad([x for x, _ in examples], pad_id, left=False)
    labels, _ = pad([targets(x, m) for x, m in examples], IGNORE, left=False)
    return {"input_ids": ids, "attention_mask": mask}, labels
