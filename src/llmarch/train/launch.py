"""`llmarch train --nproc N`: the training command in N processes on this machine, started by torchrun's agent
(torch.distributed.run, run in this process) with --standalone, a private rendezvous on a free port. When a
process fails the agent stops the others; the failure is reported in one line. Several machines: torchrun
itself, with its rendezvous flags (docs/distributed.md)."""
from __future__ import annotations

import logging
import os
import signal
import tempfile
from pathlib import Path

from ..rundir import resolve_checkpoint
from ..errors import LlmarchError, warn
from .distributed import DONE_DIR


def launch(nproc: int, argv: list[str], out: Path) -> None:
    """Run `python -m llmarch *argv` in nproc processes; return when all have finished."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args(["--standalone", f"--nproc-per-node={nproc}", "-m", "llmarch", *argv])
    logging.disable(logging.ERROR)  # the agent's log lines (each stop and failure); the outcome is reported here
    before = os.environ.get(DONE_DIR)
    with tempfile.TemporaryDirectory() as done:
        os.environ[DONE_DIR] = done  # the workers inherit it (distributed.process_group marks each rank's end)
        try:
            run(args)
        except ChildFailedError as e:
            if finished(Path(done), nproc):
                # gloo's teardown can abort a process (SIGABRT, "terminate called without an active exception")
                # after the closing barrier, rarely and only under load: the run itself is complete
                warn(f"{first_failure(e.failures)} while leaving the process group, after every process had "
                     f"finished; the run is complete")
                return
            raise LlmarchError(describe(e.failures, out)) from None
        except SignalException:  # Ctrl-C reached the agent (and the workers)
            raise KeyboardInterrupt from None
        finally:
            logging.disable(logging.NOTSET)
            if before is None:
                os.environ.pop(DONE_DIR, None)
            else:
                os.environ[DONE_DIR] = before


def finished(done: Path, nproc: int) -> bool:
    """Whether every rank passed the closing barrier (each left its mark in `done`)."""
    return all((done / str(rank)).exists() for rank in range(nproc))


def describe(failures: dict, out: Path) -> str:
    """`rank 1 exited with signal SIGKILL; the job was stopped; last complete checkpoint: out/step-000010`."""
    try:
        last = f"last complete checkpoint: {resolve_checkpoint(out)}"
    except LlmarchError:
        last = f"no checkpoint in {out}"
    return f"{first_failure(failures)}; the job was stopped; {last}"


def first_failure(failures: dict) -> str:
    """`rank 1 exited with signal SIGKILL`: the rank that failed first on its own: killed by a signal other than
    the agent's own SIGTERM, else exited with an error, before those the agent stopped (or that lost contact with
    it: a process whose peer vanished may abort, SIGABRT, before the agent has seen the peer's own end)."""
    rank, failure = min(failures.items(), key=lambda item: (item[1].exitcode == -signal.SIGTERM,
                                                            item[1].exitcode == -signal.SIGABRT,
                                                            item[1].exitcode > 0, item[1].timestamp))
    how = f"signal {failure.signal_name()}" if failure.exitcode < 0 else f"code {failure.exitcode}"
    return f"rank {rank} exited with {how}"
