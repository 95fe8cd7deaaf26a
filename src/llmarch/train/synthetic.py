"""Train any causal config on a synthetic long-range task (data/synthetic.py), as a task of the training loop
(train/loop.py), and report its answer accuracy on a held-out set:
`llmarch synthetic --task recall --model gpt-tiny --attention linear`."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..models.build import build_model
from ..config import ModelConfig
from ..data.synthetic import SyntheticTask
from ..device import parse_device
from ..errors import LlmarchError, check_fields
from .evaluate import score
from .loop import LoopConfig, run
from .objectives import loss_parts, training_loss
from .task import Batch

EVAL_BATCH = 128  # held-out sequences per forward


@dataclass
class SyntheticConfig:
    steps: int = 500  # optimizer steps
    batch_size: int = 32  # sequences per step (fresh ones each step)
    lr: float = 1e-3  # learning rate (AdamW)
    weight_decay: float = 0.0  # AdamW decoupled weight decay of matrices
    eval_sequences: int = 512  # held-out sequences scored at the end
    seed: int = 0  # seed of the init and the sequences
    device: str | None = None  # cpu, cuda, cuda:N or mps; None: cuda if available, else cpu

    def loop_config(self) -> LoopConfig:
        """Linear warmup over the first 10% of the steps, then a constant learning rate (min_lr = lr); AdamW's
        usual betas; one evaluation, at the end."""
        return LoopConfig(steps=self.steps, lr=self.lr, min_lr=self.lr, warmup_steps=max(1, self.steps // 10),
                          weight_decay=self.weight_decay, beta1=0.9, beta2=0.999, grad_clip=1.0,
                          eval_every=self.steps, seed=self.seed, device=self.device)


class Synthetic:
    """The task (train/task.py) of `train_synthetic`: fresh batches every step, a fixed held-out set."""
    loss_baseline = None

    def __init__(self, cfg: ModelConfig, task: SyntheticTask, sc: SyntheticConfig):
        self.cfg, self.task, self.sc = cfg, task, sc

    def setup(self, device: torch.device, resumed: tuple | None = None) -> tuple:
        sc = self.sc
        self.held_out = self.task.batch(sc.eval_sequences, np.random.default_rng([sc.seed, 1]))
        if resumed is not None:
            return resumed
        torch.manual_seed(sc.seed)
        return build_model(self.cfg, device), None

    def describe(self, model) -> str:
        return f"{self.task.name}: {self.cfg.name}, {self.task.seq_len}-token sequences"

    def batch(self, step: int, micro: int) -> Batch:
        x, y = self.task.batch(self.sc.batch_size, np.random.default_rng([self.sc.seed, 2, step, micro]))
        return Batch({"input_ids": x}, y, x.numel())

    def loss(self, model, logits, labels, batch_mean=None):
        return training_loss(model, logits, labels, batch_mean=batch_mean)

    def parts(self, model) -> list[str]:
        return loss_parts(model)

    def metrics(self) -> list[str]:
        return ["val_loss", "val_accuracy"]

    def evaluate(self, model) -> dict[str, float]:
        """Loss and argmax accuracy on the answer tokens (targets not IGNORE) of the held-out sequences."""
        x, y = self.held_out
        batches = (({"input_ids": x[i:i + EVAL_BATCH]}, y[i:i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH))
        result = score(model, batches)
        return {"val_loss": result["loss"], "val_accuracy": result["accuracy"]}

    def files(self) -> dict[str, str]:
        return {}

    def metadata(self) -> dict:
        return {"task": asdict(self.task), **asdict(self.sc)}


def train_synthetic(cfg: ModelConfig, task: SyntheticTask, sc: SyntheticConfig) -> dict:
    task.validate()
    check_fields(sc, positive=("steps", "batch_size", "lr", "eval_sequences"), nonnegative=("weight_decay", "seed"))
    parse_device(sc.device)
    if not cfg.causal or cfg.is_encoder_decoder or cfg.head != "lm":
        raise LlmarchError("synthetic tasks train a causal language model (decoder-only)")
    if cfg.vocab_size < task.vocab_size:
        raise LlmarchError(f"the task needs vocab_size >= {task.vocab_size}, the model has {cfg.vocab_size}")
    if cfg.context_length < task.seq_len:
        raise LlmarchError(f"the task's sequences are {task.seq_len} tokens, longer than context_length "
                           f"{cfg.context_length}")
    done = run(Synthetic(cfg, task, sc), sc.loop_config(), None, verbose=False)
    return {"task": task.name, "model": cfg.name, "attention": cfg.attention, "mixer": cfg.mixer,
            "steps": sc.steps, "final_train_loss": done.losses[sc.steps],
            "accuracy": done.evals[sc.steps]["val_accuracy"]}
