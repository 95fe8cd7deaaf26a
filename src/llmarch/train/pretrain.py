"""Pretraining as a task of the training loop (train/loop.py): random windows of a tokenized corpus under an
objective (train/objectives.py: causal LM, masked LM, span corruption or text infilling); validation loss
and perplexity on the held-out split, against the unigram entropy of the training split."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..models.build import build_model
from ..config import ModelConfig
from ..data.corpus import read_documents
from ..data.dataset import TokenData, split_documents, tokenizer_for
from ..data.tokenizer import check_fits
from ..device import parse_device
from ..errors import LlmarchError, check_fields, warn
from ..interop.gguf_tokenizer import checkpoint_tokenizer  # a checkpoint's, or a .gguf file's
from ..rundir import resolve_checkpoint
from .distributed import rank_and_world
from .evaluate import evaluate, unigram_entropy
from .metrics import perplexity
from .objectives import OBJECTIVES, check_objective, loss_parts, model_kwargs, objective_for, training_loss
from .resume import resumed_config
from .task import Batch

PARALLEL = ("ddp", "fsdp")
# the settings a resumed run may change: where and how fast it runs, how often it reports and saves, and its final
# step (the cosine decay then ends at the new final step; the warm-up is kept)
MAY_CHANGE = ("steps", "eval_every", "save_every", "log_every", "keep_checkpoints", "device", "compile",
              "activation_checkpointing", "parallel", "sample_prompt", "sample_tokens")
TOKENIZERS = ("bpe", "byte")
SENTINELS = 100  # T5's count of sentinel tokens (<extra_id_0> ... <extra_id_99>)


@dataclass
class TrainConfig:
    steps: int = 1000  # optimizer steps
    # clm: causal LM (decoders); mlm: masked LM (encoders: BERT, RoBERTa); span: T5 span corruption and
    # infill: BART text infilling (encoder-decoders)
    objective: str = "clm"
    mask_rate: float = 0.15  # mlm: share of tokens selected for prediction
    noise_rate: float | None = None  # span: noise density (None: 0.15); infill: masked share (None: 0.3)
    whole_word_mask: bool = False  # mlm: select whole words (all of a word's tokens together)
    batch_size: int = 16  # sequences per step (the global batch under several processes)
    grad_accum: int = 1  # micro-batches of batch_size rows per step: a step trains on batch_size x grad_accum
    lr: float = 1e-3  # peak learning rate (AdamW)
    min_lr: float = 1e-4  # cosine decay's floor, at step `steps`: the last step trains just above it (as transformers')
    warmup_steps: int | None = None  # linear warmup; None: min(100, steps // 10)
    weight_decay: float = 0.1  # AdamW decoupled weight decay of matrices
    beta1: float = 0.9  # AdamW beta1
    beta2: float = 0.95  # AdamW beta2
    grad_clip: float = 1.0  # clip the global gradient norm to this
    z_loss: float = 0.0  # weight of the output z-loss, log(Z)^2 (PaLM §5 uses 1e-4)
    eval_every: int = 100  # steps between evaluations (and the last step)
    save_every: int | None = None  # steps between checkpoints; None: eval_every (also the last step, SIGINT, SIGTERM)
    eval_tokens: int = 32768  # validation tokens per evaluation
    keep_checkpoints: int = 2  # newest checkpoints kept in the run directory
    seed: int = 0  # seed of the init, the batches and the masks
    data: str | None = None  # text file, directory, glob or .jsonl; None: the embedded standard-library corpus
    # bpe (trained on the training split, vocab = model vocab), byte, or a checkpoint (directory, run directory
    # or .gguf file) whose tokenizer to take as it is: a draft model for it (speculative decoding)
    tokenizer: str = "bpe"
    val_fraction: float = 0.05  # held-out share of the data, in (0, 1)
    compile: bool = False  # torch.compile the training forward
    activation_checkpointing: bool = False  # recompute each block's activations in backward (less memory)
    parallel: str = "ddp"  # several processes (torchrun): ddp (a replica each) or fsdp (FSDP2, sharded)
    device: str | None = None  # cpu, cuda, cuda:N or mps; None: cuda if available, else cpu
    log_every: int = 10  # steps between progress lines when not on a terminal
    sample_prompt: str | None = None  # after training, print a sample continuing this prompt
    sample_tokens: int = 64  # tokens of that sample

    def validate(self) -> None:
        """Every field in its range, each error one line naming the field and the value; the device exists."""
        # a zero clip norm would zero every gradient
        check_fields(self, positive=("steps", "batch_size", "grad_accum", "eval_every", "eval_tokens", "log_every",
                                     "keep_checkpoints", "lr", "grad_clip"),
                     nonnegative=("weight_decay", "z_loss", "min_lr", "sample_tokens", "warmup_steps", "seed"),
                     below_one=("beta1", "beta2"))
        if self.save_every is not None and self.save_every <= 0:
            raise LlmarchError(f"save_every must be positive, got {self.save_every}")
        if self.objective not in OBJECTIVES:
            raise LlmarchError(f"unknown objective {self.objective!r}; choose one of: {', '.join(OBJECTIVES)}")
        if not 0 < self.mask_rate < 1:
            raise LlmarchError(f"mask_rate must be in (0, 1), got {self.mask_rate}")
        if self.noise_rate is not None and not 0 < self.noise_rate < 1:
            raise LlmarchError(f"noise_rate must be in (0, 1), got {self.noise_rate}")
        if not 0 < self.val_fraction < 1:
            raise LlmarchError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.tokenizer not in TOKENIZERS and not Path(self.tokenizer).exists():
            raise LlmarchError(f"unknown tokenizer {self.tokenizer!r}: choose one of {', '.join(TOKENIZERS)}, or "
                               "a checkpoint directory or .gguf file whose tokenizer to take")
        if self.parallel not in PARALLEL:
            raise LlmarchError(f"unknown parallel {self.parallel!r}; choose one of: {', '.join(PARALLEL)}")
        parse_device(self.device)

    def resumed(self, saved: dict, given: set[str] = frozenset()) -> "TrainConfig":
        """This config checked against the run's saved one (`saved`, trainer_state.json's train_config): the
        fields named in `given` (set explicitly by the user) may differ only where MAY_CHANGE says; every other
        field takes the saved value, so a resumed run trains exactly as it started."""
        return resumed_config(self, saved, given, MAY_CHANGE)

    def check_world(self, world: int) -> None:
        if self.batch_size % world:
            raise LlmarchError(f"batch_size {self.batch_size} (the global batch) is not divisible by the "
                               f"{world} processes")

    @property
    def warmup(self) -> int:
        return self.warmup_steps if self.warmup_steps is not None else min(100, self.steps // 10)


@dataclass
class TrainResult:
    checkpoint: Path
    losses: dict[int, float] = field(default_factory=dict)  # step -> training loss
    val_losses: dict[int, float] = field(default_factory=dict)
    unigram_entropy: float = float("nan")


class Pretraining:
    """The task (train/task.py) of `train`: model_cfg None resumes a run only."""

    def __init__(self, model_cfg: ModelConfig | None, tc: TrainConfig):
        self.model_cfg, self.tc = model_cfg, tc
        self.loss_baseline = float("nan")  # the unigram entropy, once the data is read

    def setup(self, device: torch.device, resumed: tuple | None = None) -> tuple:
        tc = self.tc
        docs = read_documents(tc.data)
        model, tok = resumed if resumed is not None else self._fresh(docs, device)
        cfg = model.config
        check_objective(tc.objective, cfg)
        self.data = TokenData.prepare(docs, tok, tc.val_fraction)
        self.objective = objective_for(tc.objective, tok, tc.mask_rate, tc.whole_word_mask, cfg.context_length,
                                       tc.noise_rate)
        check_fits(tok, cfg.vocab_size)
        self.data.check_vocab(cfg.vocab_size)
        self.context = cfg.context_length
        self.eval_context = self._eval_context(len(self.data.val))
        self.loss_baseline = unigram_entropy(self.data.train)
        return model, tok

    def _eval_context(self, held_out: int) -> int:
        """The validation windows' length: the context, or one shorter window where the held-out split is shorter
        (as `llmarch eval` does), found before the first step rather than at the first evaluation."""
        if held_out < 2:
            raise LlmarchError(f"the held-out split has {held_out} tokens, too few to evaluate on: more --data or a "
                               "larger --val-fraction")
        if held_out < self.context + 1:
            warn(f"the held-out split has {held_out} tokens, fewer than one {self.context}-token window: "
                 f"evaluating one window of {held_out - 1}")
        return min(self.context, held_out - 1)

    def _fresh(self, docs: list, device: torch.device) -> tuple:
        """A model and the tokenizer trained for it on the training split."""
        tc, model_cfg = self.tc, self.model_cfg
        if model_cfg is None:
            raise LlmarchError("a fresh run needs --model")
        check_objective(tc.objective, model_cfg)
        if tc.tokenizer in TOKENIZERS and any(d.ids is not None for d in docs):
            raise LlmarchError("the data holds token ids ('ids' records): train with the tokenizer that made them, "
                               "--tokenizer CHECKPOINT")
        if tc.tokenizer in TOKENIZERS:
            train_docs, _ = split_documents(docs, tc.val_fraction)
            sentinels = SENTINELS if tc.objective == "span" else 0
            tok = tokenizer_for(train_docs, tc.tokenizer, model_cfg.vocab_size,
                                mask=tc.objective in ("mlm", "infill"), sentinels=sentinels)
        else:  # another model's, as it is (setup checks that it fits the vocabulary)
            tok = checkpoint_tokenizer(resolve_checkpoint(tc.tokenizer))
        if model_cfg.is_encoder_decoder:  # our tokenizers have no pad: eos pads, starts the decoder and ends outputs
            model_cfg = model_cfg.replace(pad_id=tok.eos_id, decoder_start_id=tok.eos_id, eos_id=tok.eos_id)
        torch.manual_seed(self.tc.seed)
        return build_model(model_cfg, device), tok

    def describe(self, model) -> str:
        world = rank_and_world()[1]
        n_params = sum(p.numel() for p in model.parameters())
        return (f"{model.config.name}: {n_params:,} parameters, {len(self.data.train):,} training tokens"
                f"{f', {world} processes ({self.tc.parallel})' if world > 1 else ''}; "
                f"unigram entropy {self.loss_baseline:.3f} nats")

    def batch(self, step: int, micro: int) -> Batch:
        tc = self.tc
        x, y = self.data.batch("train", step, tc.batch_size, self.context, tc.seed, micro)
        # the 0 was the rank when each process drew its own batch: kept, one process draws what it always did
        inputs, y = self.objective(x, y, np.random.default_rng([tc.seed, step, micro, 0, 2]))
        return Batch(model_kwargs(inputs), y, tc.batch_size * self.context)

    def loss(self, model, logits, labels, batch_mean=None):
        return training_loss(model, logits, labels, self.tc.z_loss, batch_mean)

    def parts(self, model) -> list[str]:
        return loss_parts(model, self.tc.z_loss)

    def metrics(self) -> list[str]:
        return ["val_loss", "val_ppl"]

    def evaluate(self, model) -> dict[str, float]:
        tc = self.tc
        loss = evaluate(model, self.data, tc.batch_size, tc.eval_tokens, self.objective, tc.seed,
                        context=self.eval_context)["loss"]
        return {"val_loss": loss, "val_ppl": perplexity(loss)}

    def files(self) -> dict[str, str]:
        return {}

    def metadata(self) -> dict:
        return {**asdict(self.tc), "warmup_steps": self.tc.warmup}  # the warm-up as planned, not re-derived
