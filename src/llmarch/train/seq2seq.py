"""Supervised sequence-to-sequence training of an encoder-decoder (teacher forcing: the decoder reads the
target shifted right and predicts each next token; Sutskever et al. 2014), as a task of the training loop
(train/loop.py). Data: a .jsonl of {source, target}, or the default task from the embedded corpus
(data/seq2seq.py: a function's name from its docstring). Starts from a checkpoint, or from a preset/config
with a tokenizer trained on the training texts. Reports validation loss and the exact-match score of greedy
decoding against the trivial baseline (always answering the most common training target)."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch

from ..models.build import build_model
from ..rundir import resolve_checkpoint
from ..presets import resolve
from ..data.corpus import Document
from ..data.dataset import tokenizer_for
from ..data.seq2seq import exact_match, load_seq2seq, seq2seq_batch
from ..data.tokenizer import check_fits, ends_in_eos
from ..errors import LlmarchError
from ..generate import generate
from ..interop.gguf_tokenizer import checkpoint_tokenizer  # a checkpoint's, or a .gguf file's
from .evaluate import evaluating, score
from .loop import run
from .objectives import loss_parts, training_loss
from .resume import FineTuning
from .schedule import batch_indices
from .task import Batch


@dataclass
class Seq2SeqResult:
    checkpoint: Path
    exact_match: float  # greedy decoding on the validation split, after the last step
    trivial_baseline: float
    val_losses: dict[int, float] = field(default_factory=dict)
    val_exact_match: dict[int, float] = field(default_factory=dict)


def _encode(tok, pairs: list[tuple[str, str]], max_length: int) -> list[tuple[list[int], list[int]]]:
    """Token ids of each pair, both ending in eos (kept when the text is cut to max_length)."""
    def ids(text: str) -> list[int]:  # one eos, whether or not the tokenizer's post-processor appends it
        return ends_in_eos(tok.encode(text), tok.eos_id)[:-1][: max_length - 1] + [tok.eos_id]

    return [(ids(s), ids(t)) for s, t in pairs]


class Seq2Seq(FineTuning):
    """The task (train/task.py) of `train_seq2seq`; fc: a FinetuneConfig with task 'seq2seq'."""
    @cached_property
    def data(self):
        """The pairs, read when first needed: the default task parses the whole standard library (4 s of CPU),
        after which a model that is not an encoder-decoder was refused."""
        return load_seq2seq(self.fc.data, self.fc.val_fraction)

    def setup(self, device: torch.device, resumed: tuple | None = None) -> tuple:
        model, tok = resumed if resumed is not None else self._start(device)
        cfg = model.config
        if not cfg.is_encoder_decoder:
            raise LlmarchError(f"{cfg.name} is not an encoder-decoder; --task seq2seq needs one (t5-tiny, ...)")
        check_fits(tok, cfg.vocab_size)
        self.max_length = min(self.fc.max_length or cfg.context_length, cfg.context_length)
        self.train_pairs = _encode(tok, self.data.train, self.max_length)
        self.val_pairs = _encode(tok, self.data.val, self.max_length)
        self.longest_target = max(len(t) for _, t in self.train_pairs)
        self.cfg, self.tok = cfg, tok
        return model, tok

    def _start(self, device: torch.device) -> tuple:
        """(model, tokenizer) from a checkpoint directory, or fresh from a preset or config file."""
        if Path(self.checkpoint).is_dir():
            from .. import load as load_any  # llmarch or Hugging Face checkpoints

            src = resolve_checkpoint(self.checkpoint)
            return load_any(src, device), checkpoint_tokenizer(src)
        cfg = resolve(self.checkpoint)
        if not cfg.is_encoder_decoder:  # before training a tokenizer for it
            raise LlmarchError(f"{cfg.name} is not an encoder-decoder; --task seq2seq needs one (t5-tiny, ...)")
        texts = [Document(str(i), f"{s}\n{t}") for i, (s, t) in enumerate(self.data.train)]
        tok = tokenizer_for(texts, self.fc.tokenizer, cfg.vocab_size)
        # our tokenizers have no pad: eos pads, starts the decoder and ends outputs
        cfg = cfg.replace(pad_id=tok.eos_id, decoder_start_id=tok.eos_id, eos_id=tok.eos_id)
        torch.manual_seed(self.fc.seed)
        return build_model(cfg, device), tok

    def describe(self, model) -> str:
        return (f"{self.cfg.name}: {len(self.train_pairs):,} training and {len(self.val_pairs):,} validation pairs; "
                f"trivial baseline (most common target) exact match {self.data.trivial_baseline:.4f}")

    def _batch(self, pairs: list[tuple[list[int], list[int]]], max_length: int) -> Batch:
        batch = seq2seq_batch(pairs, self.cfg.pad_id, self.cfg.decoder_start_id, max_length, max_length)
        labels = batch.pop("labels")
        return Batch(batch, labels, int(batch["attention_mask"].sum()))

    def batch(self, step: int, micro: int) -> Batch:
        pick = batch_indices(self.fc.seed, step, len(self.train_pairs), self.fc.batch_size, micro)
        return self._batch([self.train_pairs[i] for i in pick], self.max_length)

    def loss(self, model, logits, labels, batch_mean=None):
        return training_loss(model, logits, labels, batch_mean=batch_mean)  # + router losses of an MoE model

    def parts(self, model) -> list[str]:
        return loss_parts(model)

    def metrics(self) -> list[str]:
        return ["val_loss", "val_exact_match"]

    def evaluate(self, model) -> dict[str, float]:
        """Teacher-forced loss per target token, and exact match of greedy decoding against the references."""
        b, pairs = self.fc.batch_size, self.val_pairs
        chunks = [pairs[i:i + b] for i in range(0, len(pairs), b)]
        context = self.cfg.context_length
        loss = score(model, ((batch.inputs, batch.labels) for batch in (self._batch(c, context) for c in chunks)))
        predictions = []
        with evaluating(model), torch.no_grad():
            for chunk in chunks:
                rows = generate(model, [s for s, _ in chunk], self.longest_target, eos_id=self.tok.eos_id)
                predictions += [self.tok.decode(t for t in row if t != self.tok.eos_id) for row in rows]
        return {"val_loss": loss["loss"], "val_exact_match": exact_match(predictions, [t for _, t in self.data.val])}



def train_seq2seq(start: str | Path, fc, out: str | Path, verbose: bool = True, resume: bool = False
                  ) -> Seq2SeqResult:
    """fc: a FinetuneConfig with task 'seq2seq'; resume: continue the run in `out` (train/resume.py)."""
    task = Seq2Seq(start, fc)
    done = run(task, fc.loop_config(), Path(out), resume, verbose)
    losses = {step: m["val_loss"] for step, m in done.evals.items()}
    matches = {step: m["val_exact_match"] for step, m in done.evals.items()}
    return Seq2SeqResult(done.checkpoint, matches[fc.steps], task.data.trivial_baseline, losses, matches)
