"""A run survives being killed: SIGKILL at random moments (while writing a checkpoint too), resumed each time, ends
with the loss curve of an uninterrupted run exactly and every metrics row present; SIGINT/SIGTERM save and stop;
--save-every sets the checkpoint cadence; a resumed run keeps its saved settings; leftovers of killed writes are
removed; a damaged tokenizer cache is rebuilt."""
import csv
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from llmarch.cli import main
from llmarch.errors import LlmarchWarning

STEPS = 24
ENV = dict(os.environ, OMP_NUM_THREADS="1")  # one thread: the same reductions in every process


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "corpus.txt"
    path.write_text("".join(f"def f{i}(x):\n    return x * {i} + {i % 7}\n\n" for i in range(600)))
    return path


def argv(out, data, *extra):
    return ["train", "--model", "gpt-tiny", "--d-model", "16", "--n-layers", "1", "--n-heads", "2",
            "--context-length", "32", "--tokenizer", "byte", "--vocab-size", "260", "--data", str(data),
            "--steps", str(STEPS), "--eval-every", "6", "--save-every", "2", "--batch-size", "2",
            "--eval-tokens", "64", "--dropout", "0.1", "--keep-checkpoints", "2", "--out", str(out), *extra]


# `llmarch train ARGS`, killed by SIGKILL while its third checkpoint is being written
KILL_IN_WRITE = """
import os, signal, sys
import llmarch.train.loop as loop
from llmarch.cli import main
from llmarch.errors import LlmarchWarning
calls, save = [], loop.save_optimizer
def dying(opt, folder):
    calls.append(1)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    save(opt, folder)
loop.save_optimizer = dying
sys.exit(main(sys.argv[1:]))
"""


def start(args, module=True):
    return subprocess.Popen([sys.executable, *(["-m", "llmarch"] if module else []), *args], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def rows(out):
    with (out / "metrics.csv").open() as f:
        return {int(r["step"]): (r["train_loss"], r["lr"], r["val_loss"]) for r in csv.DictReader(f)}


def logged(out) -> int:
    """Rows in metrics.csv so far."""
    try:
        return max((out / "metrics.csv").read_text().count("\n") - 1, 0)
    except OSError:
        return 0


def resume_args(out):
    return ["train", "--out", str(out), "--resume"]


def test_killed_at_random_moments_the_run_ends_as_an_uninterrupted_one(tmp_path, data):
    reference = tmp_path / "reference"
    job = start(argv(reference, data))  # as the killed run's processes are started: the same threads
    assert job.wait(timeout=300) == 0, job.stderr.read()[-2000:]
    out, rng, kills = tmp_path / "killed", random.Random(0), 0
    # first, a SIGKILL in the middle of writing the third checkpoint (its weights written, its optimizer not)
    job = start(["-c", KILL_IN_WRITE, *argv(out, data)], module=False)
    assert job.wait(timeout=300) == -signal.SIGKILL, job.stderr.read()[-2000:]
    assert list(out.glob(".step-000006.tmp-*")) and (out / "latest").read_text().strip() == "step-000004"
    # then at random moments: a few milliseconds after random steps' rows appear (whatever the machine's speed)
    for target in sorted(rng.sample(range(5, STEPS), 4)):
        job = start(resume_args(out))
        while logged(out) < target and job.poll() is None:
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.05))
        if job.poll() is None:
            job.send_signal(signal.SIGKILL)
            kills += 1
        job.wait(timeout=300)
        assert job.returncode in (0, -signal.SIGKILL), job.stderr.read()[-2000:]
        if job.returncode == 0:
            break
    if job.returncode != 0 and (out / "latest").read_text().strip() != f"step-{STEPS:06d}":  # not killed after its end
        job = start(resume_args(out))
        assert job.wait(timeout=300) == 0, job.stderr.read()[-2000:]
    assert kills >= 3
    got, want = rows(out), rows(reference)
    assert sorted(got) == list(range(1, STEPS + 1))  # every row, once
    assert got == want  # the same losses, learning rates and validation losses, to the last printed digit
    assert not list(out.glob(".*tmp*"))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_saves_a_checkpoint_and_stops(tmp_path, data, sig):
    out = tmp_path / "run"
    job = start(argv(out, data, "--save-every", "1000", "--eval-every", "1000"))
    deadline = time.monotonic() + 120
    while not (out / "metrics.csv").is_file() or len((out / "metrics.csv").read_text().splitlines()) < 3:
        assert job.poll() is None and time.monotonic() < deadline, job.stderr.read()[-2000:]
        time.sleep(0.01)
    job.send_signal(sig)
    err = job.communicate(timeout=120)[1]
    assert job.returncode == 128 + sig, err
    last = err.strip().splitlines()[-1]
    assert f"stopped by {signal.Signals(sig).name} after step" in last and "--resume" in last, err
    step = int(last.split("after step ")[1].split(";")[0])
    assert (out / "latest").read_text().strip() == f"step-{step:06d}"
    assert sorted(rows(out)) == list(range(1, step + 1))


def test_save_every_and_leftovers_of_killed_writes(tmp_path, data):
    out = tmp_path / "run"
    assert main(argv(out, data, "--steps", "4", "--eval-every", "4", "--save-every", "1",
                     "--keep-checkpoints", "10")) == 0
    assert sorted(p.name for p in out.glob("step-*")) == [f"step-{i:06d}" for i in range(1, 5)]
    (out / ".step-000005.tmp-x1y2").mkdir()
    (out / ".latest.tmp").write_text("step-000005")
    (out / "metrics.csv").write_text((out / "metrics.csv").read_text() + "5,2.1")  # a row cut short by a kill
    assert main(resume_args(out) + ["--steps", "5"]) == 0
    assert not (out / ".step-000005.tmp-x1y2").exists() and not (out / ".latest.tmp").exists()
    assert sorted(rows(out)) == [1, 2, 3, 4, 5] and rows(out)[5][0] != "2.1"


def test_resume_keeps_the_saved_settings(tmp_path, data, capsys):
    out = tmp_path / "run"
    assert main(argv(out, data, "--steps", "4", "--warmup-steps", "3")) == 0
    capsys.readouterr()
    # a contradicting setting is refused, naming it; one that may change (the last step) is taken
    assert main(resume_args(out) + ["--steps", "6", "--batch-size", "16"]) == 2
    err = capsys.readouterr().err
    assert "--batch-size 16 contradicts the resumed run's batch_size 2" in err and len(err.splitlines()) == 1
    assert main(resume_args(out) + ["--steps", "6", "--data", str(tmp_path)]) == 2
    assert "data" in capsys.readouterr().err
    assert main(resume_args(out) + ["--steps", "6", "--n-layers", "3"]) == 2
    assert "n_layers 3" in capsys.readouterr().err
    assert main(resume_args(out) + ["--steps", "6", "--batch-size", "2"]) == 0  # the same value: fine
    import json

    saved = json.loads((out / "step-000006" / "trainer_state.json").read_text())["train_config"]
    assert saved["batch_size"] == 2 and saved["data"] == str(data) and saved["tokenizer"] == "byte"
    assert saved["warmup_steps"] == 3 and saved["steps"] == 6


def test_a_damaged_tokenizer_cache_is_rebuilt(tmp_path, monkeypatch, capsys):
    from llmarch.data.corpus import Document
    from llmarch.data.dataset import tokenizer_for

    monkeypatch.setenv("LLMARCH_CACHE", str(tmp_path / "cache"))
    docs = [Document(f"d{i}", f"def g{i}(y):\n    return y - {i}\n") for i in range(50)]
    first = tokenizer_for(docs, "bpe", 300)
    cached = next((tmp_path / "cache" / "tokenizers").glob("*/tokenizer.json"))
    cached.write_text(cached.read_text()[:100])  # a write cut short
    with pytest.warns(LlmarchWarning, match="damaged"):
        again = tokenizer_for(docs, "bpe", 300)
    assert again.encode("def g1(y):") == first.encode("def g1(y):")
    assert tokenizer_for(docs, "bpe", 300).encode("x") == first.encode("x")  # the cache is whole again
    assert not list(cached.parent.parent.glob(".*"))
