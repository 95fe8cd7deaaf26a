"""Fine-tuning a pretrained model as a sequence classifier (Devlin et al. 2019, §4: the pretrained body, a new
pooler + classifier head on the first token, all weights trained with a small learning rate). Data: a .jsonl of
{text, label}, or the default task from the embedded corpus (data/labeled.py). Reports validation accuracy
against the best constant answer."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..models.build import with_head
from ..rundir import resolve_checkpoint
from ..data.batching import encode, pad
from ..data.labeled import LabeledData, load_labeled
from ..data.tokenizer import check_fits, load_tokenizer
from ..errors import LlmarchError
from .loop import make_optimizer, save_checkpoint
from .metrics import MetricsLog, Progress
from .schedule import batch_indices, set_lr


def load(path: Path, device):
    from .. import load as load_any  # the package's loader: llmarch or Hugging Face checkpoints

    return load_any(path, device)

FIELDS = ["step", "train_loss", "lr", "val_loss", "val_accuracy"]


@dataclass
class FinetuneConfig:
    task: str = "classify"  # classify: one label per text; seq2seq: a target text per source (encoder-decoders)
    # classify: .jsonl of {text, label}, None: which stdlib package a code snippet is from;
    # seq2seq: .jsonl of {source, target}, None: a stdlib function's name from its docstring
    data: str | None = None
    tokenizer: str = "bpe"  # seq2seq from a preset: bpe (trained on the training texts) or byte
    steps: int = 300
    batch_size: int = 16
    lr: float = 1e-4
    min_lr: float = 0.0
    warmup_steps: int | None = None  # None: steps // 10
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    grad_clip: float = 1.0
    dropout: float = 0.1  # on the body and before the classifier, as BERT fine-tunes
    max_length: int | None = None  # tokens per text, first token included; None: the model's context
    eval_every: int = 100
    val_fraction: float = 0.2
    keep_checkpoints: int = 1
    seed: int = 0
    device: str | None = None
    log_every: int = 10

    def validate(self) -> None:
        if self.task not in ("classify", "seq2seq"):
            raise LlmarchError(f"unknown task {self.task!r}; choose one of: classify, seq2seq")
        for name in ("steps", "batch_size", "eval_every", "log_every", "keep_checkpoints"):
            if getattr(self, name) <= 0:
                raise LlmarchError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_length is not None and self.max_length < 2:
            raise LlmarchError(f"max_length must be at least 2, got {self.max_length}")


@dataclass
class FinetuneResult:
    checkpoint: Path
    labels: list[str]
    accuracy: float  # on the validation split, after the last step
    majority_baseline: float
    val_accuracy: dict[int, float] = field(default_factory=dict)


@torch.no_grad()
def classify_eval(model, seqs: list[list[int]], labels: list[int], batch_size: int, pad_id: int) -> dict[str, float]:
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss, correct = 0.0, 0
    try:
        for i in range(0, len(seqs), batch_size):
            ids, mask = pad(seqs[i:i + batch_size], pad_id, left=False)
            y = torch.tensor(labels[i:i + batch_size], device=device)
            logits = model(ids.to(device), attention_mask=mask.to(device)).logits.float()
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(-1) == y).sum())
    finally:
        model.train(was_training)
    return {"loss": loss / len(seqs), "accuracy": correct / len(seqs)}


def finetune(checkpoint: str | Path, fc: FinetuneConfig, out: str | Path, verbose: bool = True):
    """task classify: a FinetuneResult; task seq2seq: train/seq2seq.py's Seq2SeqResult (checkpoint may then
    also be a preset name or config file, to train from scratch)."""
    fc.validate()
    if fc.task == "seq2seq":
        from .seq2seq import train_seq2seq

        return train_seq2seq(checkpoint, fc, out, verbose)
    out = Path(out)
    if (out / "latest").exists():
        raise LlmarchError(f"{out} already holds a run; choose another --out")
    device = torch.device(fc.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    data: LabeledData = load_labeled(fc.data, fc.val_fraction)
    src = resolve_checkpoint(checkpoint)  # an llmarch checkpoint or run directory, or a Hugging Face directory
    base, tok = load(src, device), load_tokenizer(src)
    check_fits(tok, base.config.vocab_size)
    torch.manual_seed(fc.seed)
    model = with_head(base, "classify", len(data.labels), dropout=fc.dropout)
    max_length = min(fc.max_length or model.config.context_length, model.config.context_length)
    train_x = encode(tok, [t for t, _ in data.train], max_length)
    train_y = [y for _, y in data.train]
    val_x, val_y = encode(tok, [t for t, _ in data.val], max_length), [y for _, y in data.val]
    opt = make_optimizer(model, fc, device)
    warmup = fc.warmup_steps if fc.warmup_steps is not None else fc.steps // 10
    out.mkdir(parents=True, exist_ok=True)
    log = MetricsLog(out / "metrics.csv", fields=FIELDS)
    result = FinetuneResult(out, data.labels, float("nan"), data.majority_baseline())
    progress = Progress(fc.steps, 0, fc.log_every, enabled=verbose)
    progress.message(f"{len(data.labels)} labels, {len(train_x):,} training and {len(val_x):,} validation "
                     f"examples; majority-class baseline {result.majority_baseline:.3f}")
    model.train()
    for step in range(fc.steps):
        t0 = time.perf_counter()
        lr = set_lr(opt, step, fc, warmup)
        pick = batch_indices(fc.seed, step, len(train_x), fc.batch_size)
        ids, mask = pad([train_x[i] for i in pick], tok.eos_id, left=False)
        y = torch.tensor([train_y[i] for i in pick], device=device)
        loss = F.cross_entropy(model(ids.to(device), attention_mask=mask.to(device)).logits.float(), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), fc.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        progress.update(step, loss.item(), int(mask.sum()) / (time.perf_counter() - t0))
        row = dict(step=step + 1, train_loss=f"{loss.item():.6f}", lr=f"{lr:.3e}")
        if (step + 1) % fc.eval_every == 0 or step + 1 == fc.steps:
            ev = classify_eval(model, val_x, val_y, fc.batch_size, tok.eos_id)
            result.val_accuracy[step + 1] = result.accuracy = ev["accuracy"]
            row.update(val_loss=f"{ev['loss']:.6f}", val_accuracy=f"{ev['accuracy']:.4f}")
            progress.message(f"step {step + 1}: validation accuracy {ev['accuracy']:.4f} (loss {ev['loss']:.4f})")
            labels = json.dumps(data.labels) + "\n"
            result.checkpoint = save_checkpoint(model, tok, opt, fc, out, step + 1, {"labels.json": labels})
        log.write(**row)
    log.plot(out / "loss.png")
    return result
