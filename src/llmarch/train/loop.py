"""The pretraining loop (causal LM, masked LM, span corruption or text infilling: train/objectives.py): AdamW, warmup + cosine, gradient accumulation and clipping, bf16 autocast
on CUDA, optional torch.compile and activation checkpointing, periodic validation, atomic checkpoints and exact
resume. Under torchrun, data parallel over the processes (train/distributed.py; DDP or FSDP2: transforms.py):
the global batch is the same at any number of processes, each computing its own rows of it; rank 0 logs."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import load_model, save_model
from ..models.build import build_model
from ..rundir import CONFIG, atomic_directory, publish, resolve_checkpoint
from ..config import ModelConfig
from ..data.corpus import read_documents
from ..data.dataset import TokenData, split_documents, tokenizer_for
from ..data.tokenizer import Tokenizer, check_fits, load_tokenizer
from ..errors import LlmarchError
from ..transforms import for_training
from .distributed import all_sum, batch_mean, device_for, in_turns, process_group, rank_and_world, row_slice
from .evaluate import evaluate, unigram_entropy
from ..models.routing import router_losses, routing_metric_names, routing_metrics
from .objectives import IGNORE, OBJECTIVES, check_objective, model_kwargs, objective_for, training_loss
from .metrics import FIELDS, ExpertLoadLog, MetricsLog, Progress, perplexity
from .schedule import set_lr
from .sharded import is_sharded, restore, save_sharded, seed_process

PARALLEL = ("ddp", "fsdp")


@dataclass
class TrainConfig:
    steps: int = 1000
    # clm: causal LM (decoders); mlm: masked LM (encoders: BERT, RoBERTa); span: T5 span corruption and
    # infill: BART text infilling (encoder-decoders)
    objective: str = "clm"
    mask_rate: float = 0.15  # mlm: share of tokens selected for prediction
    noise_rate: float | None = None  # span: noise density (None: 0.15); infill: masked share (None: 0.3)
    whole_word_mask: bool = False  # mlm: select whole words (all of a word's tokens together)
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int | None = None  # None: min(100, steps // 10)
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    z_loss: float = 0.0  # weight of the output z-loss, log(Z)^2 (PaLM §5 uses 1e-4)
    eval_every: int = 100
    eval_tokens: int = 32768
    keep_checkpoints: int = 2
    seed: int = 0
    data: str | None = None  # None: the embedded standard-library corpus
    tokenizer: str = "bpe"  # bpe (trained on the training split, vocab = model vocab) or byte
    val_fraction: float = 0.05
    compile: bool = False
    activation_checkpointing: bool = False  # recompute each block's activations in backward (less memory)
    parallel: str = "ddp"  # several processes (torchrun): ddp (a replica each) or fsdp (FSDP2, sharded)
    device: str | None = None  # None: cuda if available, else cpu
    log_every: int = 10
    sample_prompt: str | None = None
    sample_tokens: int = 64

    def validate(self) -> None:
        for name in ("steps", "batch_size", "grad_accum", "eval_every", "log_every", "keep_checkpoints"):
            if getattr(self, name) <= 0:
                raise LlmarchError(f"{name} must be positive, got {getattr(self, name)}")
        if self.lr <= 0 or self.min_lr < 0:
            raise LlmarchError("lr must be positive and min_lr non-negative")
        if self.objective not in OBJECTIVES:
            raise LlmarchError(f"unknown objective {self.objective!r}; choose one of: {', '.join(OBJECTIVES)}")
        if self.z_loss < 0:
            raise LlmarchError(f"z_loss must be >= 0, got {self.z_loss}")
        if self.noise_rate is not None and not 0 < self.noise_rate < 1:
            raise LlmarchError(f"noise_rate must be in (0, 1), got {self.noise_rate}")
        if not 0 < self.val_fraction < 1:
            raise LlmarchError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.parallel not in PARALLEL:
            raise LlmarchError(f"unknown parallel {self.parallel!r}; choose one of: {', '.join(PARALLEL)}")

    def check_world(self, world: int) -> None:
        if self.batch_size % world:
            raise LlmarchError(f"batch_size {self.batch_size} (the global batch) is not divisible by the "
                               f"{world} processes")


@dataclass
class TrainResult:
    checkpoint: Path
    losses: dict[int, float] = field(default_factory=dict)  # step -> training loss
    val_losses: dict[int, float] = field(default_factory=dict)
    unigram_entropy: float = float("nan")


def make_optimizer(model: torch.nn.Module, tc, device: torch.device) -> torch.optim.AdamW:
    """AdamW (Loshchilov & Hutter 2019); no weight decay on gains and biases (1-D parameters)."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decayed = [p for n, p in params if p.dim() >= 2 and not n.endswith("bias")]  # experts' biases are 2-D
    ids = {id(p) for p in decayed}
    groups = [{"params": decayed, "weight_decay": tc.weight_decay},
              {"params": [p for _, p in params if id(p) not in ids], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=tc.lr, betas=(tc.beta1, tc.beta2), fused=device.type == "cuda")


SENTINELS = 100  # T5's count of sentinel tokens (<extra_id_0> ... <extra_id_99>)


def _prepare(model_cfg: ModelConfig | None, tc: TrainConfig, out: Path, resume: bool, device: torch.device,
             docs: list):
    """Model, tokenizer, optimizer state and start step: fresh, or from the run's latest checkpoint."""
    if resume:  # a sharded checkpoint's weights are read after sharding the model (sharded.restore)
        ckpt = resolve_checkpoint(out)
        model = build_model(ModelConfig.load(ckpt / CONFIG), device) if is_sharded(ckpt) else load_model(ckpt, device)
        tok = load_tokenizer(ckpt)
        state = json.loads((ckpt / "trainer_state.json").read_text())
        return model, tok, ckpt, state["step"]
    if model_cfg is None:
        raise LlmarchError("a fresh run needs --model")
    check_objective(tc.objective, model_cfg)
    train_docs, _ = split_documents(docs, tc.val_fraction)
    tok = tokenizer_for(train_docs, tc.tokenizer, model_cfg.vocab_size, mask=tc.objective in ("mlm", "infill"),
                        sentinels=SENTINELS if tc.objective == "span" else 0)
    if model_cfg.is_encoder_decoder:  # our tokenizers have no pad: eos pads, starts the decoder and ends outputs
        model_cfg = model_cfg.replace(pad_id=tok.eos_id, decoder_start_id=tok.eos_id, eos_id=tok.eos_id)
    torch.manual_seed(tc.seed)
    return build_model(model_cfg, device), tok, None, 0


def check_out(out: Path, resume: bool) -> None:
    """A fresh run must not write over another run's checkpoints."""
    if not resume and (out / "latest").exists():
        raise LlmarchError(f"{out} already holds a run; pass --resume to continue it or choose another --out")


def train(model_cfg: ModelConfig | None, tc: TrainConfig, out: str | Path, resume: bool = False,
          verbose: bool = True) -> TrainResult:
    tc.validate()
    tc.check_world(rank_and_world()[1])
    out = Path(out)
    check_out(out, resume)
    device = device_for(tc.device)
    with process_group(device):
        return _train(model_cfg, tc, out, resume, verbose, device)


def _train(model_cfg: ModelConfig | None, tc: TrainConfig, out: Path, resume: bool, verbose: bool,
           device: torch.device) -> TrainResult:
    rank, world = rank_and_world()
    docs = read_documents(tc.data)

    def setup():
        model, tok, ckpt, start = _prepare(model_cfg, tc, out, resume, device, docs)
        return model, tok, ckpt, start, TokenData.prepare(docs, tok, tc.val_fraction)

    model, tok, ckpt, start, data = in_turns(setup)  # caches written by one process, read by the others
    cfg = model.config
    check_objective(tc.objective, cfg)
    objective = objective_for(tc.objective, tok, tc.mask_rate, tc.whole_word_mask, cfg.context_length, tc.noise_rate)
    check_fits(tok, cfg.vocab_size)
    data.check_vocab(cfg.vocab_size)
    n_params = sum(p.numel() for p in model.parameters())
    forward = for_training(model, tc.parallel if world > 1 else None, device, tc.activation_checkpointing,
                           tc.compile)
    opt = make_optimizer(model, tc, device)
    if ckpt is not None:
        restore(model, opt, ckpt, tc.seed, start)
    elif world > 1:  # the same initial weights everywhere, but dropout masks of each process' own
        seed_process(tc.seed, 0)
    if start >= tc.steps:
        raise LlmarchError(f"the run is already at step {start}; pass --steps larger than that to continue")
    out.mkdir(parents=True, exist_ok=True)
    moe_names = routing_metric_names(model)
    extra_fields = (["aux_loss", "router_z_loss"] if moe_names else []) + (["z_loss"] if tc.z_loss else [])
    log, moe_log = None, None
    if rank == 0:
        log = MetricsLog(out / "metrics.csv", resume_step=start, fields=FIELDS + extra_fields + moe_names)
        moe_log = ExpertLoadLog(out / "expert_load.jsonl", start) if moe_names else None
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    warmup = tc.warmup_steps if tc.warmup_steps is not None else min(100, tc.steps // 10)
    result = TrainResult(checkpoint=out, unigram_entropy=unigram_entropy(data.train))
    progress = Progress(tc.steps, start, tc.log_every, enabled=verbose and rank == 0)
    progress.message(f"{cfg.name}: {n_params:,} parameters, {len(data.train):,} training tokens"
                     f"{f', {world} processes ({tc.parallel})' if world > 1 else ''}; "
                     f"unigram entropy {result.unigram_entropy:.3f} nats")
    tokens_per_step = tc.batch_size * tc.grad_accum * cfg.context_length
    model.train()
    for step in range(start, tc.steps):
        t0 = time.perf_counter()
        lr = set_lr(opt, step, tc, warmup)
        loss, extra = _accumulate(forward, model, data, objective, tc, step, device, world, autocast)
        loss, *values = all_sum([loss, *(extra.get(k, 0.0) for k in extra_fields)])
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)  # FSDP: the norm over all shards
        opt.step()
        opt.zero_grad(set_to_none=True)
        speed = tokens_per_step / (time.perf_counter() - t0)
        result.losses[step + 1] = loss
        progress.update(step, loss, speed)
        row = dict(step=step + 1, train_loss=f"{loss:.6f}", lr=f"{lr:.3e}", tokens_per_s=f"{speed:.0f}")
        row.update({k: f"{v:.6f}" for k, v in zip(extra_fields, values)})
        if moe_log is not None:  # the routing of rank 0's rows of the step's last micro-batch
            row.update({k: f"{v:.4f}" for k, v in routing_metrics(model).items()})
            moe_log.write(step + 1, model)
        if (step + 1) % tc.eval_every == 0 or step + 1 == tc.steps:
            val = evaluate(model, data, tc.batch_size, tc.eval_tokens, objective, tc.seed)["loss"]
            result.val_losses[step + 1] = val
            row.update(val_loss=f"{val:.6f}", val_ppl=f"{perplexity(val):.3f}")
            progress.message(f"step {step + 1}: validation loss {val:.4f} (perplexity {perplexity(val):.2f})")
            save = save_sharded if world > 1 else save_checkpoint
            result.checkpoint = save(model, tok, opt, tc, out, step + 1)
        if log is not None:
            log.write(**row)
    if log is not None:
        log.plot(out / "loss.png", baseline=result.unigram_entropy)
    return result


def _accumulate(forward, model, data: TokenData, objective, tc: TrainConfig, step: int, device: torch.device,
                world: int, autocast) -> tuple[float, dict[str, float]]:
    """Forward and backward over the step's micro-batches, on this process' rows of each; returns this
    process' share of the batch's mean loss (and of the loss's other parts), which summed over the
    processes is the mean over the whole batch."""
    loss_sum, extra = 0.0, {}
    for micro in range(tc.grad_accum):
        x, y = data.batch("train", step, tc.batch_size, model.config.context_length, tc.seed, micro)
        # the 0 was the rank when each process drew its own batch: kept, one process draws what it always did
        inputs, y = objective(x, y, np.random.default_rng([tc.seed, step, micro, 0, 2]))
        rows = row_slice(len(y))
        n_all = int((y != IGNORE).sum())
        inputs, y = {k: v[rows] for k, v in model_kwargs(inputs, device).items()}, y[rows].to(device)
        share = int((y != IGNORE).sum()) / n_all  # of the batch's predicted tokens; 1.0 in one process
        mean = batch_mean if world > 1 else None  # an MoE's load-balancing loss over the whole batch
        with autocast:
            logits = forward(**inputs).logits
            if share:
                loss, total, parts = training_loss(model, logits, y, tc.z_loss, mean)
            else:  # nothing to predict in these rows (masked LM): no gradient, but the collectives of the
                # forward (router statistics) and of the backward run as in the other processes
                total = logits.sum() * 0.0 + sum(v.sum() * 0.0 for v in router_losses(model, mean).values())
                loss, parts = total, {}
        # DDP and FSDP average the processes' gradients: so scaled, the average is the whole batch's mean loss's
        (total * (world * share) / tc.grad_accum).backward()
        loss_sum += loss.item() * share / tc.grad_accum
        for name, value in parts.items():
            extra[name] = extra.get(name, 0.0) + value * share / tc.grad_accum
    return loss_sum, extra


def save_checkpoint(model, tok: Tokenizer, opt, tc, out: Path, step: int, extra: dict[str, str] | None = None) -> Path:
    """out/step-NNNNNN/ (model, tokenizer, optimizer, RNG, the run's config, `extra` files by name), written
    atomically; `latest` names it; older checkpoints past tc.keep_checkpoints are removed."""
    name = f"step-{step:06d}"

    def write(tmp: Path) -> None:
        save_model(model, tmp)
        tok.save(tmp)
        for file, text in (extra or {}).items():
            (tmp / file).write_text(text)
        torch.save(opt.state_dict(), tmp / "optimizer.pt")
        torch.save({"torch": torch.get_rng_state()}, tmp / "rng.pt")
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step, "train_config": asdict(tc)}, indent=2))

    atomic_directory(out / name, write)
    return publish(out, name, tc.keep_checkpoints)
