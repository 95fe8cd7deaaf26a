"""Multi-process training on CPU (gloo), 2 processes: DDP and FSDP2 reproduce the 1-process loss curve at the same
global batch; sharded checkpoints resume at 1 and 2 processes (and a 1-process checkpoint at 2); every family
trains under FSDP; a killed process stops the job with one clear line and leaves a loadable checkpoint. The
trainings run in one torchrun job (distributed_worker.py), so the processes start once."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import llmarch
from llmarch import LlmarchError
from llmarch.cli import main
from llmarch.train import TrainConfig, train

HERE = Path(__file__).parent
GPT = dict(vocab_size=257, d_model=32, n_layers=2, n_heads=2, context_length=32, dropout=0.0)
TOL = 1e-5  # relative, fp32
SMALL = dict(vocab_size=400, d_model=32, n_layers=2, n_heads=2, context_length=32)  # as distributed_worker.py's
MOE = dict(SMALL, n_kv_heads=1, dropout=0.0, router_aux_loss_weight=1.0, router_z_loss_weight=0.01)


def config(steps=20, **kw) -> TrainConfig:  # as distributed_worker.py's
    return TrainConfig(steps=steps, batch_size=4, eval_every=10, eval_tokens=512, tokenizer="byte", log_every=100,
                       **kw)


def assert_close(a: dict, b: dict, steps):
    a, b = ({int(k): v for k, v in d.items()} for d in (a, b))  # JSON's keys are strings
    for step in steps:
        assert abs(a[step] - b[step]) <= TOL * abs(b[step]), (step, a[step], b[step])


@pytest.fixture(scope="module")
def runs(tmp_path_factory, corpus):
    """The 1-process reference run, then the 2-process job; its results by run name."""
    root = tmp_path_factory.mktemp("distributed")
    single = train(llmarch.resolve("gpt-tiny", **GPT), config(data=corpus), root / "single", verbose=False)
    moe = train(llmarch.resolve("mixtral-tiny", **MOE), config(6, data=corpus), root / "moe-single", verbose=False)
    spec = root / "spec.json"
    spec.write_text(json.dumps({"root": str(root), "corpus": corpus, "single": str(root / "single")}))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               str(HERE / "distributed_worker.py"), str(spec)]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 and "terminate called without an active exception" in proc.stderr:
        # once, under the suite's load, a gloo worker aborted in C++ (std::terminate, SIGABRT) before any of
        # llmarch's checks ran, and the job passed when run again: the job is run once more, from scratch, for
        # that abort only; any other failure, and a second abort, fail the test
        for made in root.iterdir():
            if made.name not in ("single", "moe-single", "spec.json"):
                shutil.rmtree(made) if made.is_dir() else made.unlink()
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((root / "results.json").read_text())
    results["single"] = [single.losses, single.val_losses]
    results["moe-single"] = [moe.losses, moe.val_losses]
    return root, results


def test_ddp_and_fsdp_match_one_process_at_the_same_global_batch(runs):
    root, results = runs
    ref_losses, ref_val = results["single"]
    for parallel in ("ddp", "fsdp"):
        losses, val = results[parallel]
        assert sorted(map(int, losses)) == list(range(1, 21))
        assert_close(losses, ref_losses, range(1, 21))
        assert_close(val, ref_val, (10, 20))
    assert ref_losses[20] < ref_losses[1]
    ckpt = root / "fsdp" / "step-000020"
    assert (ckpt / "dcp" / "metadata.json").is_file() and not (ckpt / "dcp" / ".metadata").exists()
    assert (ckpt / "config.json").is_file()
    assert (root / "fsdp" / "latest").read_text().strip() == "step-000020"
    assert not list((root / "fsdp").glob(".*tmp*"))


def test_moe_router_losses_cover_the_whole_batch_in_every_process(runs):
    """The load-balancing loss is f . P over the batch, not linear in its rows: each process averages f and P
    over all of them (a differentiable all-reduce), so 2 processes train an MoE as 1 does."""
    _, results = runs
    ref_losses, ref_val = results["moe-single"]
    for parallel in ("ddp", "fsdp"):
        losses, val = results[f"moe-aux-{parallel}"]
        assert_close(losses, ref_losses, range(1, 7))
        assert_close(val, ref_val, (6,))


def test_fsdp_checkpoint_resumes_in_one_process_and_in_two(runs, corpus):
    root, results = runs
    fsdp_losses = results["fsdp"][0]
    assert sorted(map(int, results["fsdp-resumed-2"][0])) == list(range(11, 21))
    assert_close(results["fsdp-resumed-2"][0], fsdp_losses, range(11, 21))
    one = root / "fsdp-resumed-1"
    shutil.copytree(root / "fsdp", one)
    shutil.rmtree(one / "step-000020")
    (one / "latest").write_text("step-000010\n")
    resumed = train(None, config(data=corpus), one, resume=True, verbose=False)
    assert sorted(resumed.losses) == list(range(11, 21))
    assert_close(resumed.losses, fsdp_losses, range(11, 21))
    # and a 1-process checkpoint (model.safetensors, optimizer.safetensors) resumed by 2 FSDP processes
    assert_close(results["single-resumed-2"][0], results["single"][0], range(11, 21))


def test_sharded_checkpoint_loads_in_one_process(runs, tmp_path):
    import torch

    root, _ = runs
    model = llmarch.load(root / "fsdp")
    assert model.lm_head.weight is model.embed.weight  # tied, as built
    resumed = llmarch.load(root / "fsdp-resumed-2")  # the same run, its second half trained again
    a, b = model.state_dict(), resumed.state_dict()
    assert all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6) for k in a)
    broken = tmp_path / "broken"
    shutil.copytree(root / "fsdp" / "step-000020", broken)
    for shard in (broken / "dcp").glob("*.distcp"):
        shard.write_bytes(shard.read_bytes()[:1000])
    with pytest.raises(LlmarchError, match="cannot read .*dcp \\(truncated, corrupt or crafted\\?\\)"):
        llmarch.load(broken)


def test_every_family_trains_under_fsdp_and_activation_checkpointing_changes_nothing(runs):
    root, results = runs
    for name in ("bert", "t5", "switch", "mixtral", "mamba"):
        losses, val = results[name]
        assert len(losses) == 2 and all(0 < v < 10 for v in [*losses.values(), *val.values()]), name
        assert llmarch.load(root / name).config.is_encoder_decoder == (name in ("t5", "switch"))
    plain, checkpointed = results["fsdp-4-checkpointing-False"][0], results["fsdp-4-checkpointing-True"][0]
    assert_close(checkpointed, plain, range(1, 5))


def test_killing_a_process_stops_the_job_and_keeps_the_last_checkpoint(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "llmarch", "train", "--nproc", "2", "--parallel", "fsdp", "--model", "gpt-tiny",
           "--out", str(out), "--steps", "100000", "--eval-every", "10", "--eval-tokens", "256", "--data", corpus,
           "--tokenizer", "byte", "--log-every", "1000", "--batch-size", "4",
           *[f"--{k.replace('_', '-')}={v}" for k, v in GPT.items()]]
    job = subprocess.Popen(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "latest").exists():
            if job.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no checkpoint: {job.communicate()[1][-2000:]}")
            time.sleep(0.2)
        os.kill(worker_of_rank(job.pid, 1), signal.SIGKILL)
        _, err = job.communicate(timeout=60)
    finally:
        job.kill()
    assert job.returncode != 0
    assert "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    match = re.fullmatch(r"llmarch train: error: rank 1 exited with signal SIGKILL; the job was stopped; "
                         r"last complete checkpoint: (.*step-\d{6})", line)
    assert match, err
    assert Path(match[1]).name == (out / "latest").read_text().strip()
    # the checkpoint left decodes (in this process: starting torch again for it cost 4 s of CPU)
    code = main(["generate", "--checkpoint", str(out), "--prompt", "def ", "--max-new-tokens", "5", "--temperature",
                 "0"])
    gen = capsys.readouterr()
    assert code == 0 and gen.out.startswith("def "), gen.err


def worker_of_rank(launcher: int, rank: int) -> int:
    """The pid of the training process of `rank` among the launcher's children."""
    children = [int(pid) for task in Path(f"/proc/{launcher}/task").iterdir()
                for pid in (task / "children").read_text().split()]
    for pid in children:
        if f"RANK={rank}".encode() in (Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")):
            return pid
    raise AssertionError(f"no process of rank {rank} among {children}")


@pytest.mark.parametrize("args, message", [
    (["--nproc", "2", "--batch-size", "3"], "batch_size 3 (the global batch) is not divisible by the 2 processes"),
    (["--nproc", "2", "--parallel", "zero"], "unknown parallel 'zero'; choose one of: ddp, fsdp"),
    (["--nproc", "2", "--data", "no/such/dir"], "data 'no/such/dir' does not exist"),
])
def test_launch_refuses_bad_options_in_one_line(tmp_path, capsys, args, message):
    assert main(["train", "--model", "gpt-tiny", "--out", str(tmp_path / "r"), *args]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"llmarch train: error: {message}"


def test_nproc_below_one_is_refused_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--model", "gpt-tiny", "--out", str(tmp_path / "r"), "--nproc", "0"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip() == "llmarch train: error: argument --nproc: must be >= 1, got 0"


@pytest.mark.parametrize("marked", [(0, 1), (0,)])
def test_a_process_dying_after_the_closing_barrier_does_not_fail_a_finished_job(tmp_path, marked):
    """gloo's teardown can abort a rank after all of them passed the closing barrier (each left its mark): the
    job then ends with a warning; a rank that dies before its mark fails the job as before."""
    from unittest.mock import patch

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    from llmarch.errors import LlmarchWarning
    from llmarch.train import launch as launch_module

    def run(args):  # the workers: marks where distributed.process_group leaves them, then rank 1 aborts
        for rank in marked:
            (Path(os.environ[launch_module.DONE_DIR]) / str(rank)).touch()
        failure = ProcessFailure(local_rank=1, pid=1, exitcode=-signal.SIGABRT, error_file=str(tmp_path / "none"))
        raise ChildFailedError("llmarch", {1: failure})

    with patch("torch.distributed.run.run", run):
        if len(marked) == 2:
            with pytest.warns(LlmarchWarning, match=r"^rank 1 exited with signal SIGABRT while leaving the process "
                                                     r"group, after every process had finished; the run is complete$"):
                launch_module.launch(2, ["train"], tmp_path / "out")
        else:
            with pytest.raises(LlmarchError, match=r"^rank 1 exited with signal SIGABRT; the job was stopped"):
                launch_module.launch(2, ["train"], tmp_path / "out")
    assert launch_module.DONE_DIR not in os.environ
