"""Sequence-to-sequence data: .jsonl pairs and their errors, the default docstring -> function-name task (real,
deterministic, split by file), the trivial baseline, and padded teacher-forcing batches."""
import json
import re
from collections import Counter

import pytest
import torch

from llmarch import LlmarchError
from llmarch.data.corpus import Document
from llmarch.data.seq2seq import (IGNORE, MAX_SOURCE_CHARS, Seq2SeqData, docstring_name_task, exact_match,
                                  load_seq2seq, read_pairs, seq2seq_batch, stdlib_docstring_task, val_groups)
from llmarch.train.objectives import IGNORE as LOSS_IGNORE


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_jsonl_pairs_and_split(tmp_path):
    path = _write(tmp_path / "pairs.jsonl", [{"source": f"say {i}", "target": str(i)} for i in range(50)])
    assert read_pairs(path)[:2] == [("say 0", "0"), ("say 1", "1")]
    data = load_seq2seq(str(path), val_fraction=0.2)
    assert len(data.val) == 10 and sorted(data.train + data.val) == sorted(read_pairs(path))
    assert load_seq2seq(str(path), val_fraction=0.2) == data


@pytest.mark.parametrize("record, message", [
    ({"source": "a"}, r"bad.jsonl:2: expected an object with non-empty string fields 'source' and 'target'"),
    ({"source": "a", "target": 3}, r"bad.jsonl:2: expected"),
    ({"source": "", "target": "b"}, r"bad.jsonl:2: expected"),
])
def test_bad_jsonl_records_name_file_and_line(tmp_path, record, message):
    path = _write(tmp_path / "bad.jsonl", [{"source": "ok", "target": "fine"}, record])
    with pytest.raises(LlmarchError, match=message):
        read_pairs(path)


def test_bad_sources(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(LlmarchError, match="empty.jsonl holds no source/target pairs"):
        read_pairs(tmp_path / "empty.jsonl")
    with pytest.raises(LlmarchError, match="does not exist"):
        load_seq2seq(str(tmp_path / "missing.jsonl"))
    with pytest.raises(LlmarchError, match="must be a .jsonl file"):
        load_seq2seq(str(tmp_path / "pairs.txt"))
    one = _write(tmp_path / "one.jsonl", [{"source": "a", "target": "b"}])
    with pytest.raises(LlmarchError, match="too few to split"):
        load_seq2seq(str(one))


def test_docstring_rules_on_a_hand_made_module():
    text = '''
def circle_area(r):
    """Return the area of a circle
    of radius r.

    More detail that is not part of the summary."""
def _helper():
    """A private helper."""
def __repr__(self):
    """Return repr(self)."""
def isfile(path):
    """isfile(path) -> bool"""
def undocumented(): pass
def alias():
    """Shared text."""
def other_alias():
    """Shared text."""
class C:
    async def fetch(self):
        """Get it from far away."""
    async def get_far(self):
        """Get it from far away."""
def long_word(x):
    """''' + "long word " * 100 + '''"""
'''
    docs = [Document("m.py", text), Document("n.py", text.split("def _helper")[0])]
    pairs = docstring_name_task(docs)
    assert [(p.source[:40], p.target, p.group) for p in pairs] == [
        ("Return the area of a circle of radius r.", "circle_area", "m.py"),
        ("isfile(path) -> bool", "isfile", "m.py"),
        ("Get it from far away.", "get_far", "m.py"),  # `fetch` is no word of its summary
        ("long word " * 4, "long_word", "m.py")]  # n.py's copy of `circle_area` is a duplicate
    assert pairs[-1].source == ("long word " * (MAX_SOURCE_CHARS // 10)).strip()  # cut at a word
    assert docstring_name_task(docs) == pairs


def test_default_task_is_real_deterministic_and_split_by_file():
    pairs = stdlib_docstring_task()
    assert len(pairs) > 1000
    assert len({(p.source, p.target) for p in pairs}) == len(pairs)
    assert all(not p.target.startswith("_") and set(p.target.lower().split("_")) - {""} <= set(
        re.findall(r"[a-z0-9]+", p.source.lower())) for p in pairs)
    data = load_seq2seq(None)
    assert load_seq2seq(None) == data and 0.05 < len(data.val) / len(pairs) < 0.15
    group = {(p.source, p.target): p.group for p in pairs}
    assert not {group[pair] for pair in data.train} & {group[pair] for pair in data.val}
    assert 0 <= data.trivial_baseline < 0.05


def test_trivial_baseline_and_exact_match():
    data = Seq2SeqData(train=[("a", "x"), ("b", "x"), ("c", "y")], val=[("d", "x"), ("e", "z"), ("f", " x\n")])
    assert data.trivial_baseline == pytest.approx(2 / 3)
    assert exact_match([" abs ", "max"], ["abs", "min"]) == 0.5
    with pytest.raises(LlmarchError, match="as many predictions as references"):
        exact_match(["a"], ["a", "b"])


def test_val_groups_take_whole_groups_near_the_fraction():
    sizes = {f"g{i}": 1 + i % 5 for i in range(100)}
    chosen = val_groups(sizes, 0.1)
    assert abs(sum(sizes[g] for g in chosen) / sum(sizes.values()) - 0.1) < 0.02 and val_groups(sizes, 0.1) == chosen


def test_seq2seq_batch_shifts_targets_and_ignores_padding():
    batch = seq2seq_batch([([5, 6, 7], [8, 9, 2]), ([5], [3, 2])], pad_id=0, decoder_start_id=1, max_source=8,
                          max_target=8)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["decoder_input_ids"].tolist() == [[1, 8, 9], [1, 3, 0]]
    assert batch["labels"].tolist() == [[8, 9, 2], [3, 2, IGNORE]]
    assert all(t.dtype == torch.long for t in batch.values()) and IGNORE == LOSS_IGNORE
    cut = seq2seq_batch([(list(range(10)), list(range(10, 20)))], 0, 1, max_source=4, max_target=3)
    assert cut["input_ids"].tolist() == [[0, 1, 2, 3]] and cut["labels"].tolist() == [[10, 11, 12]]
    assert cut["decoder_input_ids"].tolist() == [[1, 10, 11]]
    with pytest.raises(LlmarchError, match="at least one token"):
        seq2seq_batch([([], [1])], 0, 1, 4, 4)
    assert Counter(batch["labels"].flatten().tolist())[IGNORE] == 1
