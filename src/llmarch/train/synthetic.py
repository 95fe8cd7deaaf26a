"""Train any causal config on a synthetic long-range task (data/synthetic.py) and report its answer
accuracy on a held-out set: `llmarch synthetic --task recall --model gpt-tiny --attention linear`."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..models.build import build_model
from ..config import ModelConfig
from ..data.synthetic import IGNORE, SyntheticTask
from ..errors import LlmarchError
from .objectives import training_loss


@dataclass
class SyntheticConfig:
    steps: int = 500
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    eval_sequences: int = 512
    seed: int = 0
    device: str | None = None


@torch.no_grad()
def answer_accuracy(model, x: torch.Tensor, y: torch.Tensor, batch: int = 128) -> float:
    """Share of answer tokens (targets not IGNORE) the model's argmax gets right."""
    right = total = 0
    for i in range(0, len(x), batch):
        logits = model(x[i:i + batch]).logits
        t = y[i:i + batch]
        real = t != IGNORE
        right += int((logits.argmax(-1)[real] == t[real]).sum())
        total += int(real.sum())
    return right / total


def train_synthetic(cfg: ModelConfig, task: SyntheticTask, sc: SyntheticConfig) -> dict:
    task.validate()
    if not cfg.causal or cfg.is_encoder_decoder or cfg.head != "lm":
        raise LlmarchError("synthetic tasks train a causal language model (decoder-only)")
    if cfg.vocab_size < task.vocab_size:
        raise LlmarchError(f"the task needs vocab_size >= {task.vocab_size}, the model has {cfg.vocab_size}")
    if cfg.context_length < task.seq_len:
        raise LlmarchError(f"the task's sequences are {task.seq_len} tokens, longer than context_length "
                           f"{cfg.context_length}")
    device = torch.device(sc.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(sc.seed)
    model = build_model(cfg, device)
    opt = torch.optim.AdamW(model.parameters(), lr=sc.lr, weight_decay=sc.weight_decay)
    held_out = [t.to(device) for t in task.batch(sc.eval_sequences, np.random.default_rng([sc.seed, 1]))]
    rng = np.random.default_rng([sc.seed, 2])
    model.train()
    loss = torch.tensor(float("nan"))
    for step in range(sc.steps):
        lr = sc.lr * min(1.0, (step + 1) / max(1, sc.steps // 10))  # linear warmup over the first 10%
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = (t.to(device) for t in task.batch(sc.batch_size, rng))
        _, total, _ = training_loss(model, model(x).logits, y)
        loss = total.detach()
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    model.eval()
    return {"task": task.name, "model": cfg.name, "attention": cfg.attention, "mixer": cfg.mixer,
            "steps": sc.steps,
            "final_train_loss": float(loss), "accuracy": answer_accuracy(model, *held_out)}
