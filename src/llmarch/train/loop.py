"""The training loop, one for every task (train/task.py: a task gives batches, the loss and its metrics):
AdamW and warmup + cosine (train/schedule.py), gradient accumulation and clipping, bf16 autocast on CUDA,
optional torch.compile and activation checkpointing, evaluation every eval_every steps and at the last,
atomic checkpoints and exact resume, metrics.csv, loss.png and the progress line. Under torchrun, data
parallel over the processes (train/distributed.py; DDP or FSDP2: transforms.py): the global batch is the
same at any number of processes, each computing its own rows of it; rank 0 logs. `train` is the loop over
the pretraining task (train/pretrain.py)."""
from __future__ import annotations

import json
import math
import shutil
import signal
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from ..checkpoint import load_model, save_model
from ..models.build import build_model
from ..rundir import CONFIG, atomic_directory, publish, resolve_checkpoint
from ..config import ModelConfig
from ..data.tokenizer import Tokenizer, load_tokenizer
from ..errors import LlmarchError
from ..device import fused_adamw
from ..layers.mixer import Mixer
from ..models.routing import router_losses, routing_metric_names, routing_metrics
from ..transforms import for_training
from .distributed import all_sum, batch_mean, device_for, in_turns, process_group, rank_and_world, row_slice
from .metrics import FIELDS, ExpertLoadLog, MetricsLog, Progress
from .objectives import IGNORE
from .pretrain import Pretraining, TrainConfig, TrainResult
from .resume import DIGEST, check_start, digest, load_trained, save_trained
from .schedule import set_lr
from .sharded import is_sharded, restore, save_sharded, seed_process
from .state_files import read_trainer_state, save_optimizer, save_rng
from .task import Task

__all__ = ["LoopConfig", "Outcome", "TrainConfig", "TrainResult", "check_out", "make_optimizer", "run",
           "save_checkpoint", "train"]


@dataclass
class LoopConfig:
    """What the loop is configured by; a task's config passes on its fields of these names (`of`)."""
    steps: int
    lr: float
    min_lr: float
    warmup_steps: int
    weight_decay: float
    beta1: float
    beta2: float
    grad_clip: float
    eval_every: int
    seed: int
    save_every: int | None = None  # None: every eval_every
    grad_accum: int = 1
    keep_checkpoints: int = 1
    log_every: int = 10
    compile: bool = False
    activation_checkpointing: bool = False
    parallel: str = "ddp"  # with several processes
    device: str | None = None  # None: cuda if available, else cpu

    @classmethod
    def of(cls, config, **settings) -> LoopConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in asdict(config).items() if k in names}, **settings})


@dataclass
class Outcome:
    """What `run` leaves: the trained model, and what it logged (a public entry point reshapes it)."""
    model: torch.nn.Module
    checkpoint: Path | None  # the last one written
    losses: dict[int, float] = field(default_factory=dict)  # step -> training loss
    evals: dict[int, dict[str, float]] = field(default_factory=dict)  # step -> the task's metrics


def train(model_cfg: ModelConfig | None, tc: TrainConfig, out: str | Path, resume: bool = False,
          verbose: bool = True, given: set[str] | None = None) -> TrainResult:
    """Pretrain a model of model_cfg (or resume the run in `out`: model_cfg None). A resumed run keeps its saved
    training settings: `given` names the fields of tc the caller set on purpose (None: those that differ from
    TrainConfig's defaults); one that contradicts the saved value is an error unless it may change
    (pretrain.MAY_CHANGE)."""
    if resume:
        defaults = TrainConfig()
        given = given if given is not None else {f.name for f in fields(tc)
                                                 if getattr(tc, f.name) != getattr(defaults, f.name)}
        tc = tc.resumed(saved_train_config(Path(out)), given)
    tc.validate()
    tc.check_world(rank_and_world()[1])
    task = Pretraining(model_cfg, tc)
    done = run(task, LoopConfig.of(tc, warmup_steps=tc.warmup), Path(out), resume, verbose)
    return TrainResult(done.checkpoint, done.losses, {s: m["val_loss"] for s, m in done.evals.items()},
                       task.loss_baseline)


def saved_train_config(out: Path) -> dict:
    """The training configuration recorded in the run's latest checkpoint."""
    ckpt = resolve_checkpoint(out)
    return read_trainer_state(ckpt).get("train_config")


def fp32_master_weights(model: torch.nn.Module) -> bool:
    """Upcast a model with fp16 or bf16 trainable weights (most published checkpoints are stored so) to fp32, but
    its quantized layers (QLoRA's base keeps its kernels' bf16): training updates and AdamW's state need fp32
    (Micikevicius et al. 2018, "Mixed Precision Training", §3.1, master weights). In fp16 AdamW's eps 1e-8 rounds
    to 0, so a zero gradient gives 0/0 = NaN; in bf16 a weight moves only where an update exceeds 2^-9 of it, so
    most of a fine-tuning step's updates are lost. CUDA still computes in bf16 under autocast. True if it cast."""
    from ..quant.apply import QUANTIZED_MODULES

    half = (torch.float16, torch.bfloat16)
    if not any(p.requires_grad and p.dtype in half for p in model.parameters()):
        return False
    for module in model.modules():
        if isinstance(module, QUANTIZED_MODULES):
            continue
        for p in module.parameters(recurse=False):
            if p.dtype in half:
                p.data = p.data.float()
        for name, b in module.named_buffers(recurse=False):
            if b is not None and b.dtype in half:
                module._buffers[name] = b.float()
    return True


def make_optimizer(model: torch.nn.Module, lc, device: torch.device) -> torch.optim.AdamW:
    """AdamW (Loshchilov & Hutter 2019); no weight decay on gains and biases (1-D parameters), nor on what a
    mixer names in `no_decay` (Mamba's 2-D A_log)."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    kept = {id(p) for m in model.modules() if isinstance(m, Mixer) for n, p in m.named_parameters()
            if n in m.no_decay}
    decayed = [p for n, p in params if p.dim() >= 2 and not n.endswith("bias")  # experts' biases are 2-D
               and id(p) not in kept]
    ids = {id(p) for p in decayed}
    groups = [{"params": decayed, "weight_decay": lc.weight_decay},
              {"params": [p for _, p in params if id(p) not in ids], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lc.lr, betas=(lc.beta1, lc.beta2), fused=fused_adamw(device))



def check_out(out: Path, resume: bool) -> None:
    """A fresh run must not write over another run's checkpoints."""
    if not resume and (out / "latest").exists():
        raise LlmarchError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if resume and not (out / "latest").is_file():  # a checkpoint folder given as --out would get a run inside
        raise LlmarchError(f"{out} holds no run to resume (no `latest` file): give the run's directory as --out")


def run(task: Task, lc: LoopConfig, out: Path | None, resume: bool = False, verbose: bool = True) -> Outcome:
    """Train `task` to step lc.steps, from the latest checkpoint in `out` if resume. out None: nothing is
    written (no checkpoints, metrics or plot)."""
    if out is not None:
        check_out(out, resume)
    device = device_for(lc.device)
    with process_group(device):
        return _run(task, lc, out, resume, verbose, device)


def _resumed(out: Path, device: torch.device) -> tuple[tuple, Path, int]:
    """The run's latest checkpoint: (model, tokenizer), its directory and step. A sharded checkpoint's
    weights are read after sharding the model (sharded.restore)."""
    ckpt = resolve_checkpoint(out)
    model = build_model(ModelConfig.load(ckpt / CONFIG), device) if is_sharded(ckpt) else load_model(ckpt, device)
    step = read_trainer_state(ckpt)["step"]
    return (model, load_tokenizer(ckpt)), ckpt, step


def _run(task: Task, lc: LoopConfig, out: Path | None, resume: bool, verbose: bool, device: torch.device) -> Outcome:
    rank, world = rank_and_world()

    rebuilds = getattr(task, "rebuilds", False)  # fine-tuning: resumed from its starting model (train/resume.py)
    metadata = task.metadata()

    def setup():
        if not resume or rebuilds:
            model, tok = task.setup(device)
            if not rebuilds:
                return model, tok, None, 0
            if not resume:  # recorded, so that a resumed run can tell it rebuilt the same starting model
                metadata[DIGEST] = digest(model)
                return model, tok, None, 0
            ckpt = resolve_checkpoint(out)
            state = read_trainer_state(ckpt)
            check_start(model, state.get("train_config"), getattr(task, "source", "the starting checkpoint"))
            metadata[DIGEST] = state["train_config"].get(DIGEST)
            return model, tok, ckpt, state["step"]
        resumed, ckpt, step = _resumed(out, device)
        return *task.setup(device, resumed), ckpt, step

    model, tok, ckpt, start = in_turns(setup)  # caches written by one process, read by the others
    if fp32_master_weights(model):
        progress_note = "training in fp32: the checkpoint's fp16/bf16 weights are upcast (master weights)"
    else:
        progress_note = None
    if start >= lc.steps:
        raise LlmarchError(f"the run is already at step {start}; pass --steps larger than that to continue")
    progress = Progress(lc.steps, start, lc.log_every, enabled=verbose and rank == 0)
    progress.message(task.describe(model))
    if progress_note:
        progress.message(progress_note)
    forward = for_training(model, lc.parallel if world > 1 else None, device, lc.activation_checkpointing,
                           lc.compile)
    opt = make_optimizer(model, lc, device)
    if ckpt is not None:
        if rebuilds and not is_sharded(ckpt):  # a sharded checkpoint's weights are read by restore
            load_trained(model, ckpt)
        restore(model, opt, ckpt, lc.seed, start)
    elif world > 1:  # the same initial weights everywhere, but dropout masks of each process' own
        seed_process(lc.seed, 0)
    parts, moe_names = task.parts(model), routing_metric_names(model)
    log, moe_log = None, None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if rank == 0:
            remove_leftovers(out)
            log = MetricsLog(out / "metrics.csv", resume_step=start, fields=FIELDS + task.metrics() + parts + moe_names)
            moe_log = ExpertLoadLog(out / "expert_load.jsonl", start) if moe_names else None
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    done = Outcome(model, out)
    model.train()
    save_every = lc.save_every or lc.eval_every
    stop = StopSignal()
    with stop:
        for step in range(start, lc.steps):
            t0 = time.perf_counter()
            lr = set_lr(opt, step, lc)
            loss, extra, tokens = _accumulate(forward, model, task, lc, step, device, world, autocast)
            # the stop request rides on the step's one collective: every process stops after the same step
            loss, *values, stopping = all_sum([loss, *(extra.get(k, 0.0) for k in parts), float(stop.signal > 0)])
            if not math.isfinite(loss):  # before the update: the last checkpoint stays the last good weights
                raise LlmarchError(f"the training loss is {loss} at step {step + 1}; stopped before updating the "
                                   "weights (a lower --lr, or a checkpoint with finite weights)")
            torch.nn.utils.clip_grad_norm_(model.parameters(), lc.grad_clip)  # FSDP: the norm over all shards
            opt.step()
            opt.zero_grad(set_to_none=True)
            speed = tokens / (time.perf_counter() - t0)
            done.losses[step + 1] = loss
            progress.update(step, loss, speed)
            row = dict(step=step + 1, train_loss=f"{loss:.6f}", lr=f"{lr:.3e}", tokens_per_s=f"{speed:.0f}")
            row.update({k: f"{v:.6f}" for k, v in zip(parts, values)})
            if moe_log is not None:  # the routing of rank 0's rows of the step's last micro-batch
                row.update({k: f"{v:.4f}" for k, v in routing_metrics(model).items()})
                moe_log.write(step + 1, model)
            last = step + 1 == lc.steps
            if (step + 1) % lc.eval_every == 0 or last:
                done.evals[step + 1] = metrics = task.evaluate(model)
                row.update({k: f"{metrics[k]:.6f}" for k in task.metrics()})
                progress.message(f"step {step + 1}: " + ", ".join(f"{k} {metrics[k]:.4f}" for k in task.metrics()))
            if log is not None:  # before the step's checkpoint: every step up to the latest checkpoint is logged
                log.write(**row)
            if out is not None and ((step + 1) % save_every == 0 or last or stopping):
                save = save_sharded if world > 1 else save_checkpoint
                done.checkpoint = save(model, tok, opt, out, step + 1, metadata, lc.keep_checkpoints,
                                       task.files())
            if stopping and not last:
                if log is not None:
                    log.plot(out / "loss.png", baseline=task.loss_baseline)
                where = f"; saved {done.checkpoint}, continue with --resume" if out is not None else ""
                raise Interrupted(f"stopped by {stop.name} after step {step + 1}{where}", stop.exit_code, done)
    if log is not None:
        log.plot(out / "loss.png", baseline=task.loss_baseline)
    return done


def remove_leftovers(out: Path) -> None:
    """Temporary files and folders of writes that a killed run left half-done (checkpoints, `latest`, logs)."""
    for left in [*out.glob(".step-*.tmp*"), *out.glob(".step-*.old"), *out.glob(".*.tmp")]:
        shutil.rmtree(left, ignore_errors=True) if left.is_dir() else left.unlink(missing_ok=True)


class Interrupted(LlmarchError):
    """Training stopped on SIGINT or SIGTERM, after saving a checkpoint; exit_code as a shell reports a signal."""

    def __init__(self, message: str, exit_code: int, outcome: "Outcome | None" = None):
        super().__init__(message)
        self.exit_code, self.outcome = exit_code, outcome  # outcome: the run so far (its model, last checkpoint)


class StopSignal:
    """While active, SIGINT and SIGTERM ask the loop to stop after the current step (and save); a second SIGINT
    stops at once. Only the main thread may install signal handlers: elsewhere this does nothing."""

    def __init__(self):
        self.signal, self._previous = 0, {}

    @property
    def name(self) -> str:  # another process may have had the signal: then this one reports SIGTERM's
        return signal.Signals(self.signal or signal.SIGTERM).name

    @property
    def exit_code(self) -> int:
        return 128 + (self.signal or signal.SIGTERM)

    def _handle(self, signum, frame) -> None:
        if self.signal and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _accumulate(forward, model, task: Task, lc: LoopConfig, step: int, device: torch.device, world: int,
                autocast) -> tuple[float, dict[str, float], int]:
    """Forward and backward over the step's micro-batches, on this process' rows of each; returns this
    process' share of the step's mean loss (and of the loss's other parts), which summed over the processes is
    the mean over every item of every micro-batch (tokens; DPO: pairs), and the number of tokens the step read.
    Each micro-batch counts by its items, not as 1/grad_accum: micro-batches of SFT or masked LM predict
    different numbers of tokens, and a mean of their means weighted a short one's tokens more."""
    batches = [task.batch(step, micro) for micro in range(lc.grad_accum)]
    counts = [loss_items(task, batch.labels) for batch in batches]
    step_items = max(sum(counts), 1)
    loss_sum, extra = 0.0, {}
    for batch, n_all in zip(batches, counts):
        rows = row_slice(len(batch.labels))
        inputs = {k: v[rows].to(device) for k, v in batch.inputs.items()}
        y = batch.labels[rows].to(device)
        share = loss_items(task, y) / max(n_all, 1)  # of the micro-batch's items; 1.0 in one process
        weight = share * n_all / step_items  # this process' rows' part of the step's mean
        mean = batch_mean if world > 1 else None  # an MoE's load-balancing loss over the whole batch
        with autocast:
            logits = forward(**inputs).logits
            if share:
                loss, total, parts = task.loss(model, logits, y, mean)
            else:  # nothing to predict in these rows (masked LM): no gradient, but the collectives of the
                # forward (router statistics) and of the backward run as in the other processes
                total = logits.sum() * 0.0 + sum(v.sum() * 0.0 for v in router_losses(model, mean).values())
                loss, parts = total, {}
        # DDP and FSDP average the processes' gradients: so scaled, the average is the step's mean loss's
        (total * (world * weight)).backward()
        loss_sum += loss.item() * weight
        for name, value in parts.items():
            extra[name] = extra.get(name, 0.0) + value * weight
    return loss_sum, extra, sum(batch.tokens for batch in batches)


def loss_items(task: Task, labels: torch.Tensor) -> int:
    """How many items a task's loss is the mean over, in these rows: its predicted targets (labels not IGNORE),
    or the task's own count (Task.loss_items: DPO's pairs)."""
    count = getattr(task, "loss_items", None)
    return int(count(labels)) if count is not None else int((labels != IGNORE).sum())


def save_checkpoint(model, tok: Tokenizer, opt, out: Path, step: int, train_config: dict, keep: int,
                    files: dict[str, str] | None = None) -> Path:
    """out/step-NNNNNN/ (model, tokenizer, optimizer, RNG, the run's config, `files` by name), written
    atomically; `latest` names it; older checkpoints past the last `keep` are removed."""
    name = f"step-{step:06d}"

    def write(tmp: Path) -> None:
        save_model(model, tmp)
        tok.save(tmp)
        for file, text in (files or {}).items():
            (tmp / file).write_text(text)
        save_trained(model, tmp)
        save_optimizer(opt, tmp)
        save_rng(tmp)
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step, "train_config": train_config}, indent=2))

    atomic_directory(out / name, write)
    return publish(out, name, keep)
