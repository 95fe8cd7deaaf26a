"""What the training loop (train/loop.py) asks of a task. A task owns its data, its loss and its metrics;
the loop owns everything else (optimizer, schedule, accumulation, precision, evaluation cadence,
checkpoints and resume, processes, logging). Tasks: pretraining (train/pretrain.py: clm, mlm, span,
infill), classification (train/finetune.py), sequence-to-sequence (train/seq2seq.py) and synthetic
long-range tasks (train/synthetic.py)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass
class Batch:
    """A micro-batch of the global batch, on the CPU: the model's keyword arguments and the targets (IGNORE:
    no loss), both with the batch's rows first so the loop can give each process its rows; `tokens`, how
    many tokens it reads (the tokens/s figure)."""
    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor
    tokens: int


class Task(Protocol):
    loss_baseline: float | None  # a loss to beat, drawn on the loss plot (pretraining: the unigram entropy)
    # optional, False if absent: a resumed run calls setup() for the starting model again and reads only the trained
    # parameters from the checkpoint (fine-tuning, whose frozen base is also a reference: train/resume.py)
    rebuilds: bool

    def setup(self, device: torch.device, resumed: tuple | None = None) -> tuple:
        """(model, tokenizer or None) to train: `resumed`, the run's latest checkpoint's, or else fresh ones
        (built, or loaded from the checkpoint a fine-tuning starts from); reads the task's data for them."""

    def describe(self, model) -> str:
        """One line about the run for the log: model, data, the baseline to beat."""

    def batch(self, step: int, micro: int) -> Batch:
        """The step's micro-batch, a pure function of (seed, step, micro): a resumed run and every process
        see exactly the batches of an uninterrupted one-process run."""

    def loss(self, model, logits: torch.Tensor, labels: torch.Tensor,
             batch_mean=None) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """(the mean loss over `labels`' predicted targets, what to backpropagate, its other parts by name as
        `parts` lists them); batch_mean: the mean over the processes, for parts not linear in the rows."""

    def loss_items(self, labels: torch.Tensor) -> int:
        """Optional: how many items `loss` is the mean over in these rows (default: the labels that are not
        IGNORE); micro-batches and processes count by it (loop._accumulate)."""

    def parts(self, model) -> list[str]:
        """The names of the loss's other parts, logged at every step."""

    def metrics(self) -> list[str]:
        """The names of what `evaluate` returns, logged at every evaluation (val_loss: plotted)."""

    def evaluate(self, model) -> dict[str, float]:
        """The metrics on held-out data, the same at every call for the same weights."""

    def files(self) -> dict[str, str]:
        """Files (name: text) written into each checkpoint besides model, tokenizer and trainer state."""

    def metadata(self) -> dict:
        """The run's configuration, recorded in each checkpoint's trainer_state.json as `train_config`."""
