"""The one training loop (train/loop.py) over a task that is not pretraining: a fine-tuning run stopped and
resumed repeats the uninterrupted run exactly (batches, dropout, optimizer state), as pretraining does."""
import csv
import shutil

import torch

import llmarch
from llmarch.checkpoint import save_model
from llmarch.data import ByteTokenizer
from llmarch.train.finetune import Classification, FinetuneConfig
from llmarch.train.loop import run


def test_a_classification_run_resumes_exactly(tmp_path):
    torch.manual_seed(0)
    save_model(llmarch.build("bert-tiny", vocab_size=258, n_layers=1, d_model=32, n_heads=2, context_length=64),
               tmp_path / "ckpt")
    ByteTokenizer(mask=True).save(tmp_path / "ckpt")
    fc = FinetuneConfig(steps=6, eval_every=3, batch_size=8, max_length=32, keep_checkpoints=2, lr=1e-3)
    full = run(Classification(tmp_path / "ckpt", fc), fc.loop_config(), tmp_path / "full", verbose=False)
    stopped = tmp_path / "stopped"  # the run as it was after step 3
    shutil.copytree(tmp_path / "full", stopped)
    shutil.rmtree(stopped / "step-000006")
    (stopped / "latest").write_text("step-000003\n")
    resumed = run(Classification(tmp_path / "ckpt", fc), fc.loop_config(), stopped, resume=True, verbose=False)
    assert sorted(resumed.losses) == [4, 5, 6]
    assert all(resumed.losses[s] == full.losses[s] for s in (4, 5, 6))  # exactly equal
    assert resumed.evals[6] == full.evals[6] and 0 <= full.evals[6]["val_accuracy"] <= 1
    with (stopped / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6] and rows[-1]["val_accuracy"]
    assert (stopped / "step-000006" / "labels.json").is_file()
