"""Supervised sequence-to-sequence training of an encoder-decoder (teacher forcing: the decoder reads the
target shifted right and predicts each next token; Sutskever et al. 2014). Data: a .jsonl of {source,
target}, or the default task from the embedded corpus (data/seq2seq.py: a function's name from its
docstring). Starts from a checkpoint, or from a preset/config with a tokenizer trained on the training texts.
Reports validation loss and the exact-match score of greedy decoding against the trivial baseline (always
answering the most common training target)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..models.build import build_model
from ..rundir import resolve_checkpoint
from ..presets import resolve
from ..data.corpus import Document
from ..data.dataset import tokenizer_for
from ..data.seq2seq import Seq2SeqData, exact_match, load_seq2seq, seq2seq_batch
from ..data.tokenizer import check_fits, load_tokenizer
from ..errors import LlmarchError
from ..generate import generate
from .loop import make_optimizer, save_checkpoint
from .metrics import MetricsLog, Progress
from .objectives import IGNORE, lm_loss, training_loss
from .schedule import batch_indices, set_lr

FIELDS = ["step", "train_loss", "lr", "val_loss", "val_exact_match"]


@dataclass
class Seq2SeqResult:
    checkpoint: Path
    exact_match: float  # greedy decoding on the validation split, after the last step
    trivial_baseline: float
    val_losses: dict[int, float] = field(default_factory=dict)
    val_exact_match: dict[int, float] = field(default_factory=dict)


def _start(start: str | Path, data: Seq2SeqData, fc, device):
    """(model, tokenizer) from a checkpoint directory, or fresh from a preset or config file."""
    if Path(start).is_dir():
        from .. import load as load_any  # llmarch or Hugging Face checkpoints

        src = resolve_checkpoint(start)
        return load_any(src, device), load_tokenizer(src)
    cfg = resolve(start)
    if not cfg.is_encoder_decoder:  # before training a tokenizer for it
        raise LlmarchError(f"{cfg.name} is not an encoder-decoder; --task seq2seq needs one (t5-tiny, ...)")
    texts = [Document(str(i), f"{s}\n{t}") for i, (s, t) in enumerate(data.train)]
    tok = tokenizer_for(texts, fc.tokenizer, cfg.vocab_size)
    if cfg.is_encoder_decoder:  # our tokenizers have no pad: eos pads, starts the decoder and ends outputs
        cfg = cfg.replace(pad_id=tok.eos_id, decoder_start_id=tok.eos_id, eos_id=tok.eos_id)
    torch.manual_seed(fc.seed)
    return build_model(cfg, device), tok


def _encode(tok, pairs: list[tuple[str, str]], max_length: int) -> list[tuple[list[int], list[int]]]:
    """Token ids of each pair, both ending in eos (kept when the text is cut to max_length)."""
    def ids(text: str) -> list[int]:
        return tok.encode(text)[: max_length - 1] + [tok.eos_id]

    return [(ids(s), ids(t)) for s, t in pairs]


@torch.no_grad()
def seq2seq_eval(model, tok, pairs: list[tuple[list[int], list[int]]], references: list[str], batch_size: int,
                 max_new_tokens: int) -> dict[str, float]:
    """Teacher-forced loss per target token, and exact match of greedy decoding against the references."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    cfg = model.config
    total, count, predictions = 0.0, 0, []
    try:
        for i in range(0, len(pairs), batch_size):
            chunk = pairs[i:i + batch_size]
            batch = {k: v.to(device) for k, v in seq2seq_batch(chunk, cfg.pad_id, cfg.decoder_start_id,
                                                                   cfg.context_length, cfg.context_length).items()}
            labels = batch.pop("labels")
            n = int((labels != IGNORE).sum())
            total += lm_loss(model(**batch).logits, labels).item() * n
            count += n
            rows = generate(model, [s for s, _ in chunk], max_new_tokens, eos_id=tok.eos_id)
            predictions += [tok.decode(t for t in row if t != tok.eos_id) for row in rows]
    finally:
        model.train(was_training)
    return {"loss": total / count, "exact_match": exact_match(predictions, references), "predictions": predictions}


def train_seq2seq(start: str | Path, fc, out: str | Path, verbose: bool = True) -> Seq2SeqResult:
    """fc: a FinetuneConfig with task 'seq2seq'."""
    out = Path(out)
    if (out / "latest").exists():
        raise LlmarchError(f"{out} already holds a run; choose another --out")
    device = torch.device(fc.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    data = load_seq2seq(fc.data, fc.val_fraction)
    model, tok = _start(start, data, fc, device)
    if not model.config.is_encoder_decoder:
        raise LlmarchError(f"{model.config.name} is not an encoder-decoder; --task seq2seq needs one (t5-tiny, ...)")
    check_fits(tok, model.config.vocab_size)
    cfg = model.config
    max_length = min(fc.max_length or cfg.context_length, cfg.context_length)
    train_pairs, val_pairs = _encode(tok, data.train, max_length), _encode(tok, data.val, max_length)
    longest_target = max(len(t) for _, t in train_pairs)
    opt = make_optimizer(model, fc, device)
    warmup = fc.warmup_steps if fc.warmup_steps is not None else fc.steps // 10
    out.mkdir(parents=True, exist_ok=True)
    log = MetricsLog(out / "metrics.csv", fields=FIELDS)
    result = Seq2SeqResult(out, float("nan"), data.trivial_baseline)
    progress = Progress(fc.steps, 0, fc.log_every, enabled=verbose)
    progress.message(f"{cfg.name}: {len(train_pairs):,} training and {len(val_pairs):,} validation pairs; "
                     f"trivial baseline (most common target) exact match {result.trivial_baseline:.4f}")
    model.train()
    for step in range(fc.steps):
        t0 = time.perf_counter()
        lr = set_lr(opt, step, fc, warmup)
        pick = batch_indices(fc.seed, step, len(train_pairs), fc.batch_size)
        batch = seq2seq_batch([train_pairs[i] for i in pick], cfg.pad_id, cfg.decoder_start_id, max_length, max_length)
        batch = {k: v.to(device) for k, v in batch.items()}
        labels = batch.pop("labels")
        loss, total, _ = training_loss(model, model(**batch).logits, labels)  # + router losses of an MoE model
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), fc.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        progress.update(step, loss.item(), int(batch["attention_mask"].sum()) / (time.perf_counter() - t0))
        row = dict(step=step + 1, train_loss=f"{loss.item():.6f}", lr=f"{lr:.3e}")
        if (step + 1) % fc.eval_every == 0 or step + 1 == fc.steps:
            ev = seq2seq_eval(model, tok, val_pairs, [t for _, t in data.val], fc.batch_size, longest_target)
            result.val_losses[step + 1], result.val_exact_match[step + 1] = ev["loss"], ev["exact_match"]
            result.exact_match = ev["exact_match"]
            row.update(val_loss=f"{ev['loss']:.6f}", val_exact_match=f"{ev['exact_match']:.4f}")
            progress.message(f"step {step + 1}: validation loss {ev['loss']:.4f}, exact match "
                             f"{ev['exact_match']:.4f}")
            result.checkpoint = save_checkpoint(model, tok, opt, fc, out, step + 1)
        log.write(**row)
    log.plot(out / "loss.png")
    return result
