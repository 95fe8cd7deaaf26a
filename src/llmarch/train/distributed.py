"""Several training processes, one per device, started by torchrun (which sets RANK, LOCAL_RANK and WORLD_SIZE):
the process group (NCCL on CUDA, gloo on CPU), the device each process drives, and the few collectives the
loop itself needs. In one process every function here is a no-op and no process group exists."""
from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed as dist

from ..device import parse_device
from ..errors import LlmarchError


def rank_and_world() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


# set by `llmarch train --nproc` (launch.py): a folder where each rank leaves a mark once every rank has finished
# its work (after the closing barrier), so that a process dying as it leaves the group does not fail a finished job
DONE_DIR = "LLMARCH_DONE_DIR"


def device_for(requested: str | None) -> torch.device:
    """The device this process trains on: `requested` (None: cuda if available, else cpu); under torchrun on
    CUDA, the GPU of this process' local rank."""
    device = parse_device(requested)
    if device.type == "cuda" and device.index is None and rank_and_world()[1] > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


@contextmanager
def process_group(device: torch.device):
    """Join the job's process group for the duration (if there are several processes and no group exists yet:
    a caller may have made one), and leave it afterwards."""
    world = rank_and_world()[1]
    created = world > 1 and not dist.is_initialized()
    if created:
        cuda = device.type == "cuda"
        dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)
    try:
        yield
        if created:  # leave together: a process tearing down gloo while a peer still works can abort (SIGABRT)
            dist.barrier()
            if os.environ.get(DONE_DIR):  # every rank got here: the job's work is done
                Path(os.environ[DONE_DIR], str(dist.get_rank())).touch()
    except RuntimeError as e:
        if world > 1 and _communication_failed(e):
            detail = re.sub(r"^\[[^\]]*\] ", "", str(e).splitlines()[0])  # without gloo's source location
            raise LlmarchError(f"rank {dist.get_rank()} lost contact with the other processes: {detail}") from None
        raise
    finally:
        if created:
            dist.destroy_process_group()


def _communication_failed(e: RuntimeError) -> bool:
    """A failure of the communication itself (torch.distributed's DistError kinds, as NCCL raises; gloo's
    transport errors, which name their source file), not of this process' own work: another process has
    stopped, torchrun's agent is stopping this one, and that other failure is the one to report (launch.py)."""
    return isinstance(e, dist.DistError) or re.match(r"\[[^\]]*gloo/transport/", str(e)) is not None


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if distributed():
        dist.barrier()


def all_sum(values: list[float]) -> list[float]:
    """Each value summed over the processes (float64, so a sum of per-process shares loses nothing visible)."""
    if not distributed():
        return values
    t = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return t.tolist()


def batch_mean(t: torch.Tensor) -> torch.Tensor:
    """The mean over the processes of a per-process mean (each process holds as many rows as every other),
    differentiable: the backward sums the processes' gradients as the forward summed their values. For the
    parts of a loss that are not linear in the rows (an MoE's load-balancing loss, f . P over the batch)."""
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(t) / dist.get_world_size()


def in_turns(work):
    """`work()` first on rank 0, then on each node's local rank 0, then on the other ranks, so that caches
    (trained tokenizers, tokenized data) are written once, by one process, and only read by the others."""
    if not distributed():
        return work()
    rank, local = dist.get_rank(), int(os.environ.get("LOCAL_RANK", 0))
    turn = 0 if rank == 0 else 1 if local == 0 else 2
    result = None
    for t in range(3):
        if t == turn:
            result = work()
        dist.barrier()
    return result


def row_slice(n: int) -> slice:
    """This process' rows of a batch of n: the processes' slices are disjoint and cover it in order (equal
    when n is divisible by their number, as a training batch is; evaluation's last batch may not be)."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed() else (0, 1)
    return slice(rank * n // world, (rank + 1) * n // world)
