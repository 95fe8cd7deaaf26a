"""Direct preference optimisation (Rafailov et al. 2023, "Direct Preference Optimization", eq. 7), as a task of
the training loop (train/loop.py): for a prompt x with a preferred answer y_w and a rejected y_l,

    loss = -log sigmoid(beta * [(log pi(y_w|x) - log ref(y_w|x)) - (log pi(y_l|x) - log ref(y_l|x))]),

the log-probabilities summed over the answer's tokens (the chat template's assistant segment, data/chat.py).
The reference policy is the starting model: under LoRA (and QLoRA) the same model with its adapters off
(adapters_off), no second copy; with method full a frozen copy. The bracket times beta is the implicit reward
margin (§5); reported on held-out pairs with the share of pairs it ranks right (reward accuracy), against the
share the starting model's own likelihoods rank right.

The loop hands a task's loss only the logits and the labels, so each training batch carries its rows'
reference log-probabilities as one more column of its labels, computed when the batch is made."""
from __future__ import annotations

import copy
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..adapters import adapters_off
from ..data.chat import encode_conversation, template_for
from ..data.preferences import load_preferences
from ..data.sft import IGNORE, keep_scored, padded_rows
from .evaluate import evaluating
from .resume import FineTuning
from .schedule import batch_indices
from .sft import run_with_adapter, save_adapter, start_model
from .task import Batch


@dataclass
class DPOResult:
    checkpoint: Path
    reward_accuracy: float  # held-out pairs whose implicit reward margin is positive, after the last step
    reward_margin: float  # its mean over the held-out pairs
    base_accuracy: float  # held-out pairs whose chosen answer the starting model finds likelier
    evals: dict[int, dict[str, float]] = field(default_factory=dict)
    adapter: Path | None = None

    def summary(self) -> str:
        return (f"held-out reward accuracy {self.reward_accuracy:.4f}, mean reward margin {self.reward_margin:.4f} "
                f"(the starting model's likelihoods rank {self.base_accuracy:.4f} of the pairs right)")


def answer_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B,) sum over each row's predicted targets (not IGNORE) of log p(target); logits (B, T, V) in fp32."""
    logp = F.log_softmax(logits.float(), dim=-1).gather(-1, targets.clamp(min=0)[..., None])[..., 0]  # (B, T)
    return (logp * (targets != IGNORE)).sum(-1)


class DPO(FineTuning):
    def __init__(self, checkpoint: str | Path, fc):
        super().__init__(checkpoint, fc)
        self.data = load_preferences(fc.data, fc.val_fraction)

    def setup(self, device: torch.device, resumed: tuple | None = None) -> tuple:
        model, tok = resumed if resumed is not None else start_model(self.checkpoint, self.fc, device)
        self.model, self.pad_id = model, tok.eos_id
        self.reference = None if self.fc.method != "full" else copy.deepcopy(model).requires_grad_(False).eval()
        length = min(self.fc.max_length or 1024, model.config.context_length)
        template = template_for(tok)

        # a pair whose chosen or rejected answer lies wholly past the cut compares nothing: dropped, and counted
        self.train, self.dropped = keep_scored([self._encode(tok, template, p, length) for p in self.data.train],
                                               "training preference pair", length)
        self.val, dropped = keep_scored([self._encode(tok, template, p, length) for p in self.data.val],
                                        "held-out preference pair", length)
        self.dropped, self.length = self.dropped + dropped, length
        return model, tok

    @staticmethod
    def _encode(tok, template, pair, length: int) -> tuple:
        """((ids, assistant mask) of the chosen conversation, of the rejected one), cut to `length` tokens."""
        out = []
        for answer in (pair.chosen, pair.rejected):
            ids, mask = encode_conversation(tok, template, pair.conversation(answer))
            out.append((ids[:length], mask[:length]))
        return tuple(out)

    def describe(self, model) -> str:
        """Also scores the starting model's own preferences (not in setup, which processes run in turns)."""
        self.base_accuracy = self._scores(model, reference_only=True)["val_reward_accuracy"]
        reference = "the model with its adapters off" if self.reference is None else "a frozen copy"
        dropped = (f" ({self.dropped:,} left out, an answer past --max-length {self.length})" if self.dropped
                   else "")
        return (f"{len(self.train):,} training and {len(self.val):,} held-out preference pairs{dropped}, beta "
                f"{self.fc.beta}; "
                f"reference: {reference}; the starting model's likelihoods rank {self.base_accuracy:.4f} of the "
                "held-out pairs right")

    def _rows(self, pairs):
        """Chosen and rejected answers interleaved (c0, r0, c1, r1, ...): a process's rows keep pairs whole."""
        return padded_rows([answer for pair in pairs for answer in pair], self.pad_id)

    @torch.no_grad()
    def _reference(self, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """(2B,) log ref(answer | prompt) of each row, on the CPU."""
        device = next(self.model.parameters()).device
        off = adapters_off(self.model) if self.reference is None else nullcontext()
        with evaluating(self.model), off:
            logits = (self.reference or self.model)(**{k: v.to(device) for k, v in inputs.items()}).logits
        return answer_logps(logits, labels.to(device)).cpu()

    def batch(self, step: int, micro: int) -> Batch:
        pick = batch_indices(self.fc.seed, step, len(self.train), self.fc.batch_size, micro)
        inputs, labels = self._rows([self.train[i] for i in pick])
        reference = self._reference(inputs, labels)
        labels = torch.cat([labels.float(), reference[:, None]], dim=1)  # (2B, T + 1)
        return Batch(inputs, labels, int(inputs["attention_mask"].sum()))

    def _margins(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(pairs,) beta * [(log pi - log ref)(chosen) - (log pi - log ref)(rejected)]."""
        reward = answer_logps(logits, labels[:, :-1].long()) - labels[:, -1]
        return self.fc.beta * (reward[0::2] - reward[1::2])

    def loss(self, model, logits, labels, batch_mean=None):
        loss = -F.logsigmoid(self._margins(logits, labels)).mean()
        return loss, loss, {}

    def loss_items(self, labels: torch.Tensor) -> int:
        """The loss is a mean over pairs (rows chosen, rejected), not over answer tokens."""
        return len(labels) // 2

    def parts(self, model) -> list[str]:
        return []

    def metrics(self) -> list[str]:
        return ["val_loss", "val_reward_margin", "val_reward_accuracy"]

    @torch.no_grad()
    def _scores(self, model, reference_only: bool = False) -> dict[str, float]:
        margins = []
        b = self.fc.batch_size
        for i in range(0, len(self.val), b):
            inputs, labels = self._rows(self.val[i:i + b])
            reference = self._reference(inputs, labels)
            if reference_only:  # the starting model's own preference: log ref(chosen) - log ref(rejected)
                margins.append(reference[0::2] - reference[1::2])
                continue
            with evaluating(model) as device:
                logits = model(**{k: v.to(device) for k, v in inputs.items()}).logits
            margins.append(self._margins(logits, torch.cat([labels.float(), reference[:, None]], 1).to(device)).cpu())
        m = torch.cat(margins)
        return {"val_loss": float(-F.logsigmoid(m).mean()), "val_reward_margin": float(m.mean()),
                "val_reward_accuracy": float((m > 0).float().mean())}

    def evaluate(self, model) -> dict[str, float]:
        return self._scores(model)



def train_dpo(checkpoint: str | Path, fc, out: str | Path, verbose: bool = True, resume: bool = False
              ) -> DPOResult:
    """fc: a FinetuneConfig with task 'dpo'; resume: continue the run in `out` (train/resume.py)."""
    task = DPO(checkpoint, fc)
    done = run_with_adapter(task, fc, Path(out), checkpoint, verbose, resume)
    last = done.evals[fc.steps]
    adapter = save_adapter(done.model, done.checkpoint, checkpoint) if done.checkpoint is not None else None
    return DPOResult(done.checkpoint, last["val_reward_accuracy"], last["val_reward_margin"], task.base_accuracy,
                     done.evals, adapter)
