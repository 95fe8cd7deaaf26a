"""The one training loop (train/loop.py) over a task that is not pretraining: a fine-tuning run stopped and
resumed repeats the uninterrupted run exactly (batches, dropout, optimizer state), as pretraining does; micro-batches
count by their targets."""
import csv
import shutil

import torch
import torch.nn.functional as F

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


def test_accumulated_micro_batches_count_by_their_targets():
    """grad_accum: the step's loss and gradient are the token mean over every micro-batch's targets, as one
    batch of all their rows gives (a micro-batch of 2 targets beside one of 16 counted as half the step before)."""
    from llmarch.train.loop import LoopConfig, _accumulate
    from llmarch.train.objectives import IGNORE, training_loss
    from llmarch.train.task import Batch

    torch.manual_seed(0)
    model = llmarch.build("gpt-tiny", n_layers=1, d_model=32, n_heads=2, context_length=8, vocab_size=50)
    x, y = torch.randint(0, 50, (4, 8)), torch.randint(0, 50, (4, 8))
    y[0:2, 1:] = IGNORE  # micro-batch 0: 2 targets (an SFT batch with short answers); micro-batch 1: 16

    class Rows:
        def batch(self, step, micro):
            return Batch({"input_ids": x[2 * micro:2 * micro + 2]}, y[2 * micro:2 * micro + 2], 16)

        def loss(self, model, logits, labels, mean=None):
            return training_loss(model, logits, labels)

    lc = LoopConfig(steps=1, lr=1e-3, min_lr=0, warmup_steps=0, weight_decay=0, beta1=.9, beta2=.95, grad_clip=1,
                    eval_every=1, seed=0, grad_accum=2)
    loss, _, tokens = _accumulate(lambda **kw: model(**kw), model, Rows(), lc, 0, torch.device("cpu"), 1,
                                  torch.autocast("cpu", enabled=False))
    accumulated = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    whole = F.cross_entropy(model(x).logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE)
    whole.backward()
    assert tokens == 32 and abs(loss - whole.item()) < 1e-6
    assert all(torch.allclose(a, p.grad, atol=1e-6, rtol=1e-5) for a, p in zip(accumulated, model.parameters()))


def test_no_weight_decay_on_ssm_decay_rates():
    """Mamba's A_log (2-D: inner x state) is no weight: AdamW's decay would pull A = -exp(A_log) toward -1."""
    from types import SimpleNamespace

    from llmarch.train.loop import make_optimizer

    model = llmarch.build("mamba-tiny", n_layers=1, d_model=32, vocab_size=50)
    lc = SimpleNamespace(weight_decay=0.1, lr=1e-3, beta1=0.9, beta2=0.95)
    decayed = {id(p) for p in make_optimizer(model, lc, torch.device("cpu")).param_groups[0]["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in decayed}
    assert "blocks.0.mixer.A_log" not in names and "blocks.0.mixer.in_proj.weight" in names
