"""Resuming a fine-tuning run (train/resume.py): a run cut after a checkpoint and resumed ends with the weights,
adapters and logs of the uninterrupted run, for every task and method; the starting checkpoint is rebuilt and
checked; the CLI's --resume keeps the run's settings and refuses what would change them."""
import csv
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

import llmarch
from llmarch.checkpoint import save_model
from llmarch.cli import main
from llmarch.errors import LlmarchError, LlmarchWarning
from llmarch.train.finetune import FinetuneConfig, finetune
from llmarch.train.resume import DIGEST, TRAINED

from conftest import byte_checkpoint
from test_dpo import pairs
from test_sft import conversations

STEPS = 4


@pytest.fixture(autouse=True)
def one_thread():
    """One thread, as under the suite's workers: with two, MKL's reductions may round differently from run to
    run, and "the same weights" could only be asked within a tolerance."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def base(tmp_path):
    return byte_checkpoint(tmp_path, context_length=128)


def data_for(task, tmp_path):
    path = tmp_path / f"{task}.jsonl"
    rows = {"sft": conversations(40), "dpo": pairs(40),
            "classify": [{"text": f"{w} {i}", "label": w} for i in range(20) for w in ("spam", "eggs")],
            "seq2seq": [{"source": r["prompt"], "target": r["prompt"][::-1]} for r in pairs(40)]}[task]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def cut(run, at):
    """The run as a kill just after its checkpoint at step `at` leaves it (that checkpoint latest)."""
    for later in run.glob("step-*"):
        if int(later.name.split("-")[1]) > at:
            shutil.rmtree(later)
    (run / "latest").write_text(f"step-{at:06d}\n")


def tensors(ckpt):
    out = load_file(str(ckpt / "model.safetensors"))
    if (ckpt / TRAINED).is_file():
        out.update({"trained." + k: v for k, v in load_file(str(ckpt / TRAINED)).items()})
    return out


def logged(run):
    """metrics.csv without its timings."""
    with open(run / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k != "tokens_per_s"} for row in csv.DictReader(f)]


# dropout on (classify's 0.1, LoRA's): the RNG must continue as it would have
@pytest.mark.parametrize("task,method", [("sft", "lora"), ("sft", "qlora"), ("dpo", "full"), ("dpo", "lora"),
                                         ("classify", "full"), ("seq2seq", "full")])
def test_a_resumed_run_ends_as_the_uninterrupted_one(base, tmp_path, task, method):
    """seq2seq starts from a preset: its model and tokenizer are rebuilt from the seed and the data."""
    fc = dict(task=task, method=method, data=data_for(task, tmp_path), steps=STEPS, batch_size=2,
              eval_every=STEPS // 2, keep_checkpoints=2, max_length=64, lr=1e-2, lora_dropout=0.1,
              qlora_group_size=32)
    whole = tmp_path / "whole"
    finetune(base if task != "seq2seq" else "t5-tiny", FinetuneConfig(**fc), whole, verbose=False)
    resumed = tmp_path / "resumed"
    shutil.copytree(whole, resumed)
    cut(resumed, STEPS // 2)
    result = finetune(None, FinetuneConfig(), resumed, verbose=False, resume=True)
    assert result.checkpoint == resumed / f"step-{STEPS:06d}"
    a, b = tensors(whole / f"step-{STEPS:06d}"), tensors(result.checkpoint)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "weights differ from the whole run's"
    assert logged(resumed) == logged(whole)
    if method == "lora" and task == "sft":  # the adapter written at the end of a resumed run too
        assert (result.checkpoint / "adapter" / "adapter_config.json").is_file()
    if task != "seq2seq":  # and the run trained: the weights moved from the base's
        start = load_file(str(base / "model.safetensors"))
        moved = [k for k in start if k in a and not torch.equal(start[k], a[k])]
        assert moved if method != "qlora" else any(k.startswith("trained.") for k in a)


def test_resume_extends_a_finished_run_and_checks_its_start(base, tmp_path, capsys):
    data = data_for("sft", tmp_path)
    run = tmp_path / "run"
    common = ["--out", str(run), "--batch-size", "2", "--eval-every", "2", "--max-length", "64"]
    assert main(["finetune", "--task", "sft", "--checkpoint", str(base), "--data", data, "--steps", "2",
                 *common]) == 0
    capsys.readouterr()
    # the recorded settings hold: --task and --data need not be given; --steps may grow
    assert main(["finetune", "--resume", "--steps", "4", *common]) == 0
    assert "held-out assistant loss" in capsys.readouterr().out
    state = json.loads((run / "step-000004" / "trainer_state.json").read_text())
    assert state["step"] == 4 and state["train_config"]["steps"] == 4
    assert state["train_config"]["warmup_steps"] == 0  # the run's own warm-up (2 // 10), not 4 // 10 re-derived
    assert state["train_config"]["checkpoint"] == str(base.resolve())
    for argv, message in [
            (["--resume", "--steps", "6", "--lr", "0.5"], "--lr 0.5 contradicts the resumed run's lr"),
            (["--resume", "--steps", "4"], "already at step 4"),
            (["--resume", "--steps", "6", "--checkpoint", str(tmp_path)], "is not the run's starting checkpoint"),
            (["--steps", "6", "--data", data, "--task", "sft"], "a fresh fine-tuning run needs --checkpoint")]:
        out = tmp_path / "fresh" if "--resume" not in argv else run
        assert main(["finetune", *argv, *common[2:], "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    # the starting checkpoint changed since: refused, not trained on from another base
    torch.manual_seed(1)
    save_model(llmarch.build("llama-tiny", vocab_size=257, n_layers=2, d_model=64, n_heads=4, n_kv_heads=2,
                             ffn_hidden=128, context_length=128), base)
    with pytest.raises(LlmarchError, match="is not the model this run started from"):
        finetune(None, FinetuneConfig(steps=6), run, verbose=False, resume=True, given={"steps"})
    assert sorted(p.name for p in run.glob("step-*")) == ["step-000004"]  # nothing written over


def test_resume_needs_a_run(tmp_path, capsys):
    assert main(["finetune", "--resume", "--out", str(tmp_path / "none")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_resume_from_elsewhere_with_relative_paths_and_a_moved_base(tmp_path, monkeypatch, capsys):
    """The run records its data and base as absolute paths (a relative --data was read from the directory of the
    resume, another file of that name there); a base moved since is given as --checkpoint and checked by its
    digest; a checkpoint folder as --out is refused (a run was nested inside it)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    byte_checkpoint(work, context_length=128)
    (work / "convs.jsonl").write_text("".join(json.dumps(c) + "\n" for c in conversations(40)))
    common = ["--batch-size", "2", "--eval-every", "2", "--max-length", "64"]
    assert main(["finetune", "--task", "sft", "--checkpoint", "ckpt", "--data", "convs.jsonl", "--steps", "2",
                 "--out", "run", *common]) == 0
    saved = json.loads((work / "run" / "step-000002" / "trainer_state.json").read_text())["train_config"]
    assert saved["data"] == str(work / "convs.jsonl") and saved["checkpoint"] == str(work / "ckpt")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "convs.jsonl").write_text("")  # a file of the same name that is not the run's
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["finetune", "--resume", "--out", str(work / "run"), "--steps", "4", "--data",
                 str(work / "convs.jsonl"), *common]) == 0  # the same file by another name is no contradiction
    shutil.move(str(work / "ckpt"), str(work / "moved"))
    assert main(["finetune", "--resume", "--out", str(work / "run"), "--steps", "6", *common]) == 2
    assert "is gone; give its new place as --checkpoint" in capsys.readouterr().err
    assert main(["finetune", "--resume", "--out", str(work / "run"), "--steps", "6", "--checkpoint",
                 str(work / "moved"), *common]) == 0
    assert main(["finetune", "--resume", "--out", str(work / "run" / "step-000006"), "--steps", "8", *common]) == 2
    assert "holds no run to resume" in capsys.readouterr().err
    assert not (work / "run" / "step-000006" / "latest").exists()


def test_an_older_run_without_its_record_resumes_on_the_checkpoint_given_with_a_warning(base, tmp_path):
    fc = FinetuneConfig(task="sft", data=data_for("sft", tmp_path), steps=2, batch_size=2, eval_every=2,
                        max_length=64)
    finetune(base, fc, tmp_path / "run", verbose=False)
    state_file = tmp_path / "run" / "step-000002" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    for key in ("checkpoint", DIGEST):
        del state["train_config"][key]
    state_file.write_text(json.dumps(state))
    with pytest.raises(LlmarchError, match="does not record the checkpoint it started from"):
        finetune(None, FinetuneConfig(steps=4), tmp_path / "run", verbose=False, resume=True, given={"steps"})
    with pytest.warns(LlmarchWarning, match="taken as that model, unchecked"):
        finetune(base, FinetuneConfig(steps=4), tmp_path / "run", verbose=False, resume=True, given={"steps"})
