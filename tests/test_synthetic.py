"""Synthetic long-range tasks: the batches are what the papers describe, the answers are the only targets,
and the CLI trains any config on them and reports answer accuracy."""
from __future__ import annotations

import json

import numpy as np

import llmarch
from llmarch.cli import main
from llmarch.data.synthetic import IGNORE, SyntheticTask
from llmarch.train.synthetic import SyntheticConfig, train_synthetic


def test_recall_batches():
    task = SyntheticTask("recall", pairs=4, keys=6, values=5)
    x, y = task.batch(50, np.random.default_rng(0))
    assert x.shape == (50, 9) == (50, task.seq_len) and int(x.max()) < task.vocab_size
    assert (y[:, :-1] == IGNORE).all()
    for row, target in zip(x.tolist(), y[:, -1].tolist()):
        keys, values = row[0:8:2], row[1:8:2]
        assert len(set(keys)) == 4 and all(k < 6 for k in keys) and all(6 <= v < 11 for v in values)
        assert target == values[keys.index(row[-1])]  # the queried key's value


def test_copy_batches():
    task = SyntheticTask("copy", length=20, data_tokens=5, data_vocab=4)
    x, y = task.batch(30, np.random.default_rng(0))
    assert x.shape == (30, 25) and (x[:, 20] == 1).all()
    for row, target in zip(x.tolist(), y.tolist()):
        data = [t for t in row[:20] if t != 0]
        assert len(data) == 5 and all(2 <= t < 6 for t in data)
        answers = [t for t in target if t != IGNORE]
        assert answers == data and target[:19] == [IGNORE] * 19


def test_training_on_recall_beats_chance():
    """300 steps lift answer accuracy well above chance (1/8); solving recall outright (induction heads)
    takes far longer than a test should."""
    cfg = llmarch.resolve("gpt-tiny", vocab_size=16, d_model=64, n_layers=2, n_heads=4, context_length=16)
    result = train_synthetic(cfg, SyntheticTask("recall", pairs=3, keys=8, values=8),
                             SyntheticConfig(steps=300, batch_size=64, lr=3e-3))
    assert result["accuracy"] > 0.3


def test_cli_reports_accuracy_and_refuses_a_small_vocab(capsys):
    assert main(["synthetic", "copy", "--model", "gpt-tiny", "--n-layers", "1", "--d-model", "32", "--n-heads", "2",
                 "--attention", "linear", "--task-length", "12", "--task-data-tokens", "3", "--steps", "3",
                 "--eval-sequences", "16", "--json"]) in (0, None)
    result = json.loads(capsys.readouterr().out)
    assert result["attention"] == "linear" and 0 <= result["accuracy"] <= 1
    assert main(["synthetic", "recall", "--vocab-size", "8", "--steps", "1"]) != 0
    assert "vocab_size >= 32" in capsys.readouterr().err
