"""Checkpoints of a multi-process run, in torch.distributed.checkpoint's (DCP) format: every process writes its
own shards of the model and optimizer state into one folder, and any number of processes reads it back (DCP
reshards on load: 2 processes to 1, FSDP to DDP), a single process whole (checkpoint.load_model, for
generate and eval). step-NNNNNN/ holds dcp/, config.json, the tokenizer, trainer_state.json and each process'
RNG state (no pickles anywhere: dcp_json.py, state_files.py); it is written as .step-NNNNNN.tmp and renamed by rank 0 once every process has finished, and only
then does `latest` name it, so a job stopped while saving leaves the previous checkpoint as the latest."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..checkpoint import SHARDED, is_sharded_folder
from ..errors import warn
from ..rundir import CONFIG, move_into_place, publish
from .distributed import distributed
from .state_files import load_optimizer, load_rng, read_trainer_state, save_rng


def is_sharded(ckpt: Path) -> bool:
    return is_sharded_folder(ckpt / SHARDED)


def save_sharded(model, tok, opt, out: Path, step: int, train_config: dict, keep: int,
                 files: dict[str, str] | None = None) -> Path:
    """Called by every process with its (sharded or replicated) model and optimizer; as loop.save_checkpoint."""
    import torch.distributed.checkpoint as dcp  # here: importing it takes 0.5 s, which no other command needs
    from torch.distributed.checkpoint.state_dict import get_state_dict

    from ..dcp_json import JsonWriter

    rank, world = dist.get_rank(), dist.get_world_size()
    name = f"step-{step:06d}"
    tmp = out / f".{name}.tmp"
    if rank == 0:  # a job stopped while saving left its .step-*.tmp: loop.remove_leftovers took it at start
        tmp.mkdir(parents=True)
    dist.barrier()
    model_state, optim_state = get_state_dict(model, opt)
    dcp.save({"model": model_state, "optim": optim_state}, storage_writer=JsonWriter(tmp / SHARDED))
    save_rng(tmp, f"rng-rank{rank}.safetensors")
    dist.barrier()  # every process' files are complete
    if rank == 0:
        model.config.save(tmp / CONFIG)
        tok.save(tmp)
        for file, text in (files or {}).items():
            (tmp / file).write_text(text)
        state = {"step": step, "world_size": world, "train_config": train_config}
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2))
        move_into_place(tmp, out / name)
        publish(out, name, keep)
    dist.barrier()
    return out / name


def restore(model, opt, ckpt: Path, seed: int, step: int) -> None:
    """Put `ckpt`'s weights (of a sharded checkpoint; a single-process one's were loaded with the model),
    optimizer state and RNG into this process' model and optimizer, whatever the number of processes that
    wrote it and that read it now. The RNG (dropout) continues exactly only at the same number of processes;
    at another, each process starts a stream of its own from (seed, step, rank)."""
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_state_dict, set_optimizer_state_dict,
                                                         set_state_dict)

    from ..dcp_json import load

    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed() else (0, 1)
    if is_sharded(ckpt):
        model_state, optim_state = get_state_dict(model, opt)
        state = {"model": model_state, "optim": optim_state}
        load(state, ckpt / SHARDED, distributed())
        set_state_dict(model, opt, model_state_dict=state["model"], optim_state_dict=state["optim"])
    else:
        saved = load_optimizer(ckpt, _device(model))
        if world == 1:
            opt.load_state_dict(saved)
        else:  # full tensors in every process; FSDP keeps its shard of each
            set_optimizer_state_dict(model, opt, _by_name(model, opt, saved),
                                     options=StateDictOptions(full_state_dict=True))
    saved_world = read_trainer_state(ckpt).get("world_size", 1)
    rng = load_rng(ckpt / ("rng.safetensors" if saved_world == 1 else f"rng-rank{rank}.safetensors"))
    if saved_world == world and rng is not None:
        torch.set_rng_state(rng)
    else:
        if saved_world == world:
            warn(f"{ckpt} has no RNG state; dropout continues from a fresh stream, not as the run would have")
        seed_process(seed, step)


def seed_process(seed: int, step: int) -> None:
    """A torch RNG stream (dropout) of this process' own, from (seed, step, rank)."""
    rank = dist.get_rank() if distributed() else 0
    torch.manual_seed(int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0]))


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _by_name(model, opt, saved: dict) -> dict:
    """A torch optimizer state dict (parameters numbered in group order) with parameter names instead: the
    form set_optimizer_state_dict takes."""
    names = {id(p): n for n, p in model.named_parameters()}
    order = [names[id(p)] for group in opt.param_groups for p in group["params"]]
    return {"state": {order[i]: s for i, s in saved["state"].items()},
            "param_groups": [{**g, "params": [order[i] for i in g["params"]]} for g in saved["param_groups"]]}
