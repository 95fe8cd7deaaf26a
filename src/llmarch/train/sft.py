"""Supervised fine-tuning on conversations, as a task of the training loop (train/loop.py): each conversation
rendered by the checkpoint's chat template (data/chat.py), the loss on the assistant's tokens only, several
conversations packed per row with attention kept within each (data/sft.py; models whose mixers cannot keep them
apart get one conversation a row). All weights train (method full) or LoRA adapters only (method lora,
adapters/): the checkpoints hold the adapters folded in, so `generate` and `convert --to-hf` read them as any
model, and an `adapter/` folder in PEFT's format where the model's Hugging Face family names its layers. Method
qlora quantizes the base to int4 first (adapters/quantized.py): its checkpoints hold the int4 weights with the
adapters unmerged beside them, which `llmarch.load` (so `generate`) rebuilds as they were trained.
Scored on the held-out conversations: the assistant tokens' loss, before training (the base model) and after."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..adapters import LoRAConfig, adapters, apply_lora, check_foldable
from ..data.chat import encode_conversation, template_for
from ..data.sft import keep_scored, load_sft, pack, packed_rows, padded_rows
from ..data.tokenizer import check_fits
from ..errors import LlmarchError
from ..rundir import resolve_checkpoint
from ..interop.gguf_tokenizer import checkpoint_tokenizer  # a checkpoint's, or a .gguf file's
from .evaluate import score
from .loop import Interrupted, run
from .objectives import loss_parts, training_loss
from .resume import FineTuning
from .schedule import batch_indices
from .task import Batch


@dataclass
class SFTResult:
    checkpoint: Path
    base_val_loss: float  # held-out assistant-token loss of the starting model
    val_loss: float  # after the last step
    val_losses: dict[int, float] = field(default_factory=dict)
    adapter: Path | None = None  # the PEFT adapter folder, where written

    def summary(self) -> str:
        return (f"held-out assistant loss {self.val_loss:.4f} (base model {self.base_val_loss:.4f}, "
                f"{self.val_loss - self.base_val_loss:+.4f})")


def lora_config(fc) -> LoRAConfig:
    targets = tuple(t.strip() for t in fc.lora_targets.split(",") if t.strip())
    return LoRAConfig(rank=fc.lora_rank, alpha=fc.lora_alpha, dropout=fc.lora_dropout, targets=targets,
                      rslora=fc.lora_rslora, dora=fc.lora_dora)


def start_model(checkpoint, fc, device: torch.device) -> tuple:
    """(model, tokenizer) from the checkpoint, with LoRA adapters (method lora; qlora: over its weights quantized
    to int4) and every other weight frozen."""
    from .. import load as load_any  # llmarch or Hugging Face checkpoints

    src = resolve_checkpoint(checkpoint)
    model, tok = load_any(src, device), checkpoint_tokenizer(src)
    if not model.config.causal or model.config.is_encoder_decoder or model.config.head != "lm":
        raise LlmarchError(f"{model.config.name} is not a decoder-only language model; --task {fc.task} needs one")
    check_fits(tok, model.config.vocab_size)
    torch.manual_seed(fc.seed)
    refuse_full_quantized(model, fc, src)
    if fc.method == "qlora":
        quantized_base(model, fc.qlora_group_size, src)
    if fc.method in ("lora", "qlora"):
        apply_lora(model, lora_config(fc))
        check_foldable(model)  # before training, not at the first checkpoint
    return model, tok


def refuse_full_quantized(model, fc, src) -> None:
    """--method full trains every weight, which a quantized checkpoint's int4/int8 codes cannot be (only its
    norms and embeddings would move)."""
    scheme = getattr(model, "quantization", None)
    if fc.method == "full" and scheme is not None:
        raise LlmarchError(f"{src} is quantized ({scheme.method}): --method full cannot train its quantized "
                           "weights; use --method lora or qlora, or convert --to-hf it first for a float model")


def quantized_base(model, group_size: int, src) -> None:
    """QLoRA's frozen base (Dettmers et al. 2023): the model's linear layers to int4 in groups of `group_size`
    (round-to-nearest; layers int4 cannot hold to int8, quant/apply.py), in place, each full-precision weight
    dropped as its layer is replaced. A base already quantized is used as it is if it is int4 in the same groups."""
    from ..quant import quantize

    scheme = getattr(model, "quantization", None)
    if scheme is None:
        quantize(model, "int4", group_size=group_size)
    elif not (scheme.int4 and scheme.group_size == group_size):
        how = scheme.method + (f" in groups of {scheme.group_size}" if scheme.int4 else "")
        raise LlmarchError(f"{src} is already quantized ({how}); --method qlora needs a full-precision base or an "
                           f"int4 one in groups of {group_size} (--qlora-group-size)")


class SFT(FineTuning):
    def __init__(self, checkpoint: str | Path, fc):
        super().__init__(checkpoint, fc)
        self.data = load_sft(fc.data, fc.val_fraction)

    def setup(self, device: torch.device, resumed: tuple | None = None) -> tuple:
        model, tok = resumed if resumed is not None else start_model(self.checkpoint, self.fc, device)
        self.length = min(self.fc.max_length or 1024, model.config.context_length)
        template = template_for(tok)
        self.pad_id = tok.eos_id
        # a conversation whose assistant turns all lie past the cut has nothing to predict: dropped, and counted
        self.train, self.dropped = keep_scored([self._cut(encode_conversation(tok, template, c))
                                                for c in self.data.train], "training conversation", self.length)
        self.val, dropped = keep_scored([self._cut(encode_conversation(tok, template, c)) for c in self.data.val],
                                        "held-out conversation", self.length)
        self.dropped += dropped
        self.packed = model.packable
        if self.packed:  # rows fixed once, in data order: a step's batch depends on (seed, step) alone
            self.train_rows = [[self.train[i] for i in row] for row in pack([len(x) for x, _ in self.train],
                                                                            self.length)]
            self.val_rows = [[self.val[i] for i in row] for row in pack([len(x) for x, _ in self.val], self.length)]
        else:
            self.train_rows, self.val_rows = [[e] for e in self.train], [[e] for e in self.val]
        return model, tok

    def _cut(self, example: tuple[list[int], list[bool]]) -> tuple[list[int], list[bool]]:
        ids, mask = example
        return ids[:self.length], mask[:self.length]

    def describe(self, model) -> str:
        """Also scores the starting model (here rather than in setup, which processes run in turns: the
        evaluation's sums are collective)."""
        self.base_val_loss = self.evaluate(model)["val_loss"]
        over = f" over int4 weights in groups of {self.fc.qlora_group_size}" if self.fc.method == "qlora" else ""
        how = (f"LoRA rank {self.fc.lora_rank} on {len(adapters(model))} weights{over}, "
               f"{sum(p.numel() for p in model.parameters() if p.requires_grad):,} trained parameters"
               if self.fc.method != "full" else "all weights trained")
        packing = f"packed into {len(self.train_rows):,} rows of {self.length}" if self.packed else "one a row"
        dropped = (f"; {self.dropped:,} left out, their assistant turns past --max-length {self.length}"
                   if self.dropped else "")
        return (f"{len(self.train):,} training and {len(self.val):,} held-out conversations ({packing}{dropped}); "
                f"{how}; base model's held-out assistant loss {self.base_val_loss:.4f}")

    def _batch(self, rows: list[list[tuple[list[int], list[bool]]]]) -> Batch:
        if self.packed:
            inputs, labels = packed_rows(rows, self.length, self.pad_id)
        else:
            inputs, labels = padded_rows([r[0] for r in rows], self.pad_id)
        return Batch(inputs, labels, int(sum(len(x) for row in rows for x, _ in row)))

    def batch(self, step: int, micro: int) -> Batch:
        pick = batch_indices(self.fc.seed, step, len(self.train_rows), self.fc.batch_size, micro)
        return self._batch([self.train_rows[i] for i in pick])

    def loss(self, model, logits, labels, batch_mean=None):
        return training_loss(model, logits, labels, batch_mean=batch_mean)

    def parts(self, model) -> list[str]:
        return loss_parts(model)

    def metrics(self) -> list[str]:
        return ["val_loss", "val_token_accuracy"]

    def evaluate(self, model) -> dict[str, float]:
        """Loss and argmax accuracy on the held-out conversations' assistant tokens."""
        b = self.fc.batch_size
        batches = (self._batch(self.val_rows[i:i + b]) for i in range(0, len(self.val_rows), b))
        result = score(model, ((batch.inputs, batch.labels) for batch in batches))
        return {"val_loss": result["loss"], "val_token_accuracy": result["accuracy"]}



def run_with_adapter(task, fc, out: Path, base: str | Path, verbose: bool, resume: bool = False):
    """The loop's run; a run stopped by a signal writes its checkpoint's PEFT adapter too before it stops."""
    try:
        return run(task, fc.loop_config(), out, resume, verbose)
    except Interrupted as stopped:
        if stopped.outcome is not None and stopped.outcome.checkpoint is not None:
            save_adapter(stopped.outcome.model, stopped.outcome.checkpoint, base)
        raise


def save_adapter(model, checkpoint: Path, base: str | Path) -> Path | None:
    """The run's adapters in PEFT's format in checkpoint/adapter, where the model's family names its layers."""
    from ..adapters.peft import save_peft

    if not adapters(model) or model.config.hf_model_type is None:
        return None
    try:
        # a local base by its absolute path: peft resolves a relative one against the reader's directory, then
        # looks it up as a hub name
        local = Path(base)
        save_peft(model, checkpoint / "adapter", base=str(local.resolve() if local.exists() else base))
    except LlmarchError:  # a layer PEFT has no name for (a fused layout PEFT does not slice): merged weights only
        return None
    return checkpoint / "adapter"


def train_sft(checkpoint: str | Path, fc, out: str | Path, verbose: bool = True, resume: bool = False
              ) -> SFTResult:
    """fc: a FinetuneConfig with task 'sft'; resume: continue the run in `out` (train/resume.py)."""
    task = SFT(checkpoint, fc)
    done = run_with_adapter(task, fc, Path(out), checkpoint, verbose, resume)
    losses = {step: m["val_loss"] for step, m in done.evals.items()}
    adapter = save_adapter(done.model, done.checkpoint, checkpoint) if done.checkpoint is not None else None
    return SFTResult(done.checkpoint, task.base_val_loss, losses[fc.steps], losses, adapter)
