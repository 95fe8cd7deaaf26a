"""Fine-tuning a pretrained model as a sequence classifier (Devlin et al. 2019, §4: the pretrained body, a new
pooler + classifier head on the first token, all weights trained with a small learning rate), as a task of
the training loop (train/loop.py). Data: a .jsonl of {text, label}, or the default task from the embedded
corpus (data/labeled.py). Reports validation accuracy against the best constant answer."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..models.build import with_head
from ..rundir import resolve_checkpoint
from ..data.batching import encode, pad
from ..data.labeled import load_labeled
from ..data.tokenizer import check_fits
from ..device import parse_device
from ..errors import LlmarchError, check_fields, warn
from ..quant.scheme import Scheme
from ..interop.gguf_tokenizer import checkpoint_tokenizer  # a checkpoint's, or a .gguf file's
from .evaluate import score
from .loop import LoopConfig, run, saved_train_config
from .objectives import lm_loss
from .resume import FineTuning, resumed_config
from .schedule import batch_indices
from .task import Batch


# what a resumed fine-tuning run may change (train/resume.py): where it runs, how often it reports and saves, and
# its final step (the cosine decay then ends there; the warm-up is kept)
MAY_CHANGE = ("steps", "eval_every", "log_every", "keep_checkpoints", "device")


def load(path: Path, device):
    from .. import load as load_any  # the package's loader: llmarch or Hugging Face checkpoints

    return load_any(path, device)


@dataclass
class FinetuneConfig:
    task: str = "classify"  # classify: label per text; seq2seq: target per source; sft: conversations; dpo: preferences
    # classify: .jsonl of {text, label}, None: which stdlib package a code snippet is from;
    # seq2seq: .jsonl of {source, target}, None: a stdlib function's name from its docstring;
    # sft: .jsonl of {messages}, None: a stdlib function's docstring line from its source;
    # dpo: .jsonl of {prompt, chosen, rejected}, None: the sft task's answer preferred to another function's
    data: str | None = None
    # full: every weight trains; lora: adapters only (adapters/); qlora: adapters over the base quantized to int4
    # (adapters/quantized.py); None: lora for sft/dpo
    method: str | None = None
    lora_rank: int = 8  # rank r of each LoRA update (methods lora and qlora)
    lora_alpha: float = 16.0  # scaling alpha / rank (alpha / sqrt(rank) with lora_rslora)
    lora_dropout: float = 0.0  # dropout on the adapters' input
    lora_targets: str = "qkv_proj,o_proj"  # comma-separated patterns over module names (adapters/targets.py)
    lora_rslora: bool = False  # rank-stabilised scaling alpha / sqrt(rank) (Kalajdzievski 2023)
    lora_dora: bool = False  # weight-decomposed LoRA (Liu et al. 2024)
    qlora_group_size: int = 64  # method qlora: input columns per int4 scale and zero (32, 64, 128 or 256)
    beta: float = 0.1  # dpo: the KL penalty's weight (Rafailov et al. 2023, eq. 7)
    tokenizer: str = "bpe"  # seq2seq from a preset: bpe (trained on the training texts) or byte
    steps: int = 300  # optimizer steps
    batch_size: int = 16  # examples per step
    lr: float = 1e-4  # peak learning rate (AdamW)
    min_lr: float = 0.0  # cosine decay's floor, at step `steps`: the last step trains just above it (as transformers')
    warmup_steps: int | None = None  # linear warmup; None: steps // 10
    weight_decay: float = 0.01  # AdamW decoupled weight decay of matrices
    beta1: float = 0.9  # AdamW beta1
    beta2: float = 0.999  # AdamW beta2
    grad_clip: float = 1.0  # clip the global gradient norm to this
    dropout: float = 0.1  # on the body and before the classifier, as BERT fine-tunes
    max_length: int | None = None  # tokens per text, first token included; None: the model's context
    eval_every: int = 100  # steps between evaluations, each also writing a checkpoint (and the last step)
    val_fraction: float = 0.2  # held-out share of the examples, in (0, 1)
    keep_checkpoints: int = 1  # newest checkpoints kept in the run directory
    seed: int = 0  # seed of the head's init, the split and the batches
    device: str | None = None  # cpu, cuda, cuda:N or mps; None: cuda if available, else cpu
    log_every: int = 10  # steps between progress lines when not on a terminal

    def validate(self) -> None:
        if self.task not in ("classify", "seq2seq", "sft", "dpo"):
            raise LlmarchError(f"unknown task {self.task!r}; choose one of: classify, seq2seq, sft, dpo")
        if self.method is None:
            self.method = "lora" if self.task in ("sft", "dpo") else "full"
        if self.method not in ("full", "lora", "qlora"):
            raise LlmarchError(f"unknown method {self.method!r}; choose one of: full, lora, qlora")
        if self.method != "full" and self.task not in ("sft", "dpo"):
            raise LlmarchError(f"method {self.method} is for tasks sft and dpo, not {self.task}")
        if self.method == "qlora":
            Scheme("int4", self.qlora_group_size)  # checks the group size
        if self.task == "dpo" and self.beta <= 0:
            raise LlmarchError(f"beta must be positive, got {self.beta}")
        check_fields(self, positive=("steps", "batch_size", "eval_every", "log_every", "keep_checkpoints", "lr",
                                     "grad_clip"),
                     nonnegative=("min_lr", "weight_decay", "warmup_steps", "seed"),
                     below_one=("beta1", "beta2", "dropout"))
        if not 0 < self.val_fraction < 1:
            raise LlmarchError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        parse_device(self.device)
        if self.max_length is not None and self.max_length < 2:
            raise LlmarchError(f"max_length must be at least 2, got {self.max_length}")

    @property
    def warmup(self) -> int:
        return self.warmup_steps if self.warmup_steps is not None else self.steps // 10

    def loop_config(self) -> LoopConfig:
        return LoopConfig.of(self, warmup_steps=self.warmup)


@dataclass
class FinetuneResult:
    checkpoint: Path
    labels: list[str]
    accuracy: float  # on the validation split, after the last step
    majority_baseline: float
    val_accuracy: dict[int, float] = field(default_factory=dict)


class Classification(FineTuning):
    """The task (train/task.py) of `finetune`: a new classifier head on the body of `checkpoint`."""

    def __init__(self, checkpoint: str | Path, fc: FinetuneConfig):
        super().__init__(checkpoint, fc)
        self.data = load_labeled(fc.data, fc.val_fraction)

    def setup(self, device: torch.device, resumed: tuple | None = None) -> tuple:
        fc = self.fc
        if resumed is None:
            src = resolve_checkpoint(self.checkpoint)  # an llmarch checkpoint or run directory, or a Hugging Face one
            base, tok = load(src, device), checkpoint_tokenizer(src)
            check_fits(tok, base.config.vocab_size)
            from .sft import refuse_full_quantized

            refuse_full_quantized(base, fc, src)
            torch.manual_seed(fc.seed)
            model = with_head(base, "classify", len(self.data.labels), dropout=fc.dropout)
        else:
            model, tok = resumed
        max_length = min(fc.max_length or model.config.context_length, model.config.context_length)
        self.train_x = encode(tok, [t for t, _ in self.data.train], max_length)
        self.train_y = [y for _, y in self.data.train]
        self.val_x, self.val_y = encode(tok, [t for t, _ in self.data.val], max_length), [y for _, y in self.data.val]
        self.pad_id = tok.eos_id
        return model, tok

    def describe(self, model) -> str:
        return (f"{len(self.data.labels)} labels, {len(self.train_x):,} training and {len(self.val_x):,} validation "
                f"examples; majority-class baseline {self.data.majority_baseline():.3f}")

    def _batch(self, seqs: list[list[int]], labels: list[int]) -> Batch:
        ids, mask = pad(seqs, self.pad_id, left=False)
        return Batch({"input_ids": ids, "attention_mask": mask}, torch.tensor(labels), int(mask.sum()))

    def batch(self, step: int, micro: int) -> Batch:
        pick = batch_indices(self.fc.seed, step, len(self.train_x), self.fc.batch_size, micro)
        return self._batch([self.train_x[i] for i in pick], [self.train_y[i] for i in pick])

    def loss(self, model, logits, labels, batch_mean=None):
        loss = lm_loss(logits, labels)  # the cross-entropy of the label (B, n_labels) -> (B,)
        return loss, loss, {}

    def parts(self, model) -> list[str]:
        return []

    def metrics(self) -> list[str]:
        return ["val_loss", "val_accuracy"]

    def evaluate(self, model) -> dict[str, float]:
        b = self.fc.batch_size
        batches = (self._batch(self.val_x[i:i + b], self.val_y[i:i + b]) for i in range(0, len(self.val_x), b))
        result = score(model, ((batch.inputs, batch.labels) for batch in batches))
        return {"val_loss": result["loss"], "val_accuracy": result["accuracy"]}

    def files(self) -> dict[str, str]:
        return {"labels.json": json.dumps(self.data.labels) + "\n"}


def finetune(checkpoint: str | Path | None, fc: FinetuneConfig, out: str | Path, verbose: bool = True,
             resume: bool = False, given: set[str] | None = None):
    """task classify: a FinetuneResult; task seq2seq: train/seq2seq.py's Seq2SeqResult (checkpoint may then
    also be a preset name or config file, to train from scratch); sft: train/sft.py's SFTResult; dpo:
    train/dpo.py's DPOResult. resume: continue the run in `out` from its latest checkpoint, with its recorded
    settings and starting checkpoint (`checkpoint` None, or the same one); `given` names the fields of fc set on
    purpose (None: those that differ from the defaults), which may differ from the run's only in MAY_CHANGE."""
    if resume:
        checkpoint, fc = resumed(checkpoint, fc, Path(out), given)
    elif checkpoint is None:
        raise LlmarchError("a fresh fine-tuning run needs --checkpoint")
    fc.validate()
    if fc.task == "seq2seq":
        from .seq2seq import train_seq2seq

        return train_seq2seq(checkpoint, fc, out, verbose, resume)
    if fc.task == "sft":
        from .sft import train_sft

        return train_sft(checkpoint, fc, out, verbose, resume)
    if fc.task == "dpo":
        from .dpo import train_dpo

        return train_dpo(checkpoint, fc, out, verbose, resume)
    task = Classification(checkpoint, fc)
    done = run(task, fc.loop_config(), Path(out), resume, verbose)
    accuracy = {step: m["val_accuracy"] for step, m in done.evals.items()}
    return FinetuneResult(done.checkpoint, task.data.labels, accuracy[fc.steps], task.data.majority_baseline(),
                          accuracy)


def resumed(checkpoint: str | Path | None, fc: FinetuneConfig, out: Path, given: set[str] | None
            ) -> tuple[str, FinetuneConfig]:
    """The starting checkpoint and settings of the fine-tuning run in `out`, checked against those asked now."""
    saved = saved_train_config(out)
    start = saved.get("checkpoint") if isinstance(saved, dict) else None
    if start is None:  # a run written before fine-tuning runs recorded where they started
        if checkpoint is None:
            raise LlmarchError(f"the run in {out} does not record the checkpoint it started from; pass it as "
                               "--checkpoint")
        warn(f"the run in {out} does not record the model it started from: --checkpoint {checkpoint} is taken as "
             "that model, unchecked")
        start = checkpoint
    elif checkpoint is None and not Path(start).exists() and _is_path(start):
        raise LlmarchError(f"the run's starting checkpoint {start} is gone; give its new place as --checkpoint (its "
                           "weights are checked against the run's record)")
    elif checkpoint is not None and not _same(checkpoint, start):
        if Path(start).exists() or not _is_path(start):
            raise LlmarchError(f"--checkpoint {checkpoint} is not the run's starting checkpoint {start}; leave "
                               "--checkpoint out to resume")
        start = str(Path(checkpoint).resolve())  # moved: the digest of the model it builds is checked (resume.py)
    if given is None:
        defaults = FinetuneConfig()
        given = {f for f in vars(fc) if getattr(fc, f) != getattr(defaults, f)}
    if "data" in given and fc.data and saved.get("data") and _same(fc.data, saved["data"]):
        fc = replace(fc, data=saved["data"])  # the same file named another way (relative, absolute)
    return start, resumed_config(fc, saved, given, MAY_CHANGE)


def _is_path(start: str) -> bool:
    """A starting checkpoint recorded as a path (seq2seq may start from a preset name instead)."""
    return Path(start).is_absolute()


def _same(a: str | Path, b: str | Path) -> bool:
    pa, pb = Path(a), Path(b)
    return pa.resolve() == pb.resolve() if pa.exists() and pb.exists() else str(a) == str(b)
