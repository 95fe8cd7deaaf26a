"""Pretraining objectives. Each turns a batch of token windows into (model inputs, targets); a target of
IGNORE (-100) carries no loss, so one cross-entropy serves them all.

- clm, causal language modelling: predict token t+1 from tokens <= t.
- mlm, masked language modelling (Devlin et al. 2019, §3.1 "Task #1"): select `rate` (15%) of the tokens;
  of those, replace 80% by the mask token, 10% by a random token and keep 10%; predict the original token at
  the selected positions only. With whole-word masking (the BERT authors' 2019 release) a word's tokens are
  selected together. Special tokens (end-of-text, mask) are never selected.
- span, T5 span corruption, and infill, BART text infilling (train/noising.py), for encoder-decoders: each
  window becomes a (corrupted source, target) pair; the inputs are the encoder's ids and mask and the
  decoder's teacher-forced ids, as a dict of model keyword arguments."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..data.batching import IGNORE
from ..errors import LlmarchError

# (x, y, rng) -> (inputs, targets): x (B, T) a window, y (B, T) the same window shifted by one token;
# inputs: input_ids, or a dict of the model's keyword arguments
Objective = Callable[[torch.Tensor, torch.Tensor, np.random.Generator],
                     tuple[torch.Tensor | dict[str, torch.Tensor], torch.Tensor]]
OBJECTIVES = ("clm", "mlm", "span", "infill")
SEQ2SEQ_OBJECTIVES = ("span", "infill")


def model_kwargs(inputs: torch.Tensor | dict[str, torch.Tensor], device=None) -> dict[str, torch.Tensor]:
    """An objective's inputs as keyword arguments of the model's forward (on `device` if given)."""
    kwargs = {"input_ids": inputs} if isinstance(inputs, torch.Tensor) else dict(inputs)
    return {k: v.to(device) for k, v in kwargs.items()} if device is not None else kwargs


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats) over the targets that are not IGNORE; computed in fp32. logits (..., V),
    targets (...): a token's next token (B, T) or a sequence's class (B,)."""
    return F.cross_entropy(logits.flatten(0, -2).float(), targets.flatten(), ignore_index=IGNORE)


def output_z_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """PaLM §5: mean over predicted positions of log(Z)^2, Z the softmax normaliser of the output logits;
    weighted 1e-4 it keeps log Z near 0, which the paper found to stabilise training."""
    z = logits.float().logsumexp(dim=-1)
    real = targets != IGNORE
    return z[real].square().mean()


def training_loss(model, logits: torch.Tensor, targets: torch.Tensor, z_loss: float = 0.0,
                  batch_mean=None) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """(objective loss, what to backpropagate, its other parts by name): the cross-entropy plus, for a
    mixture-of-experts model, its router losses at the config's weights (models/routing.py; batch_mean for
    data-parallel training), plus the output z-loss at weight z_loss."""
    from ..models.routing import router_losses

    loss = lm_loss(logits, targets)
    total, parts = loss, {}
    router = router_losses(model, batch_mean)
    if router:
        cfg = model.config
        total = total + cfg.router_aux_loss_weight * router["aux"] + cfg.router_z_loss_weight * router["z"]
        parts.update(aux_loss=router["aux"].item(), router_z_loss=router["z"].item())
    if z_loss:
        z = output_z_loss(logits, targets)
        total = total + z_loss * z
        parts["z_loss"] = z.item()
    return loss, total, parts


def loss_parts(model, z_loss: float = 0.0) -> list[str]:
    """The names of the other parts training_loss reports for this model and z_loss weight."""
    from ..models.routing import routing_metric_names

    return (["aux_loss", "router_z_loss"] if routing_metric_names(model) else []) + (["z_loss"] if z_loss else [])


def causal_lm(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return x, y


def _is_word_char(c: str) -> bool:
    return c.isalnum() or c in "_\ufffd"


class MaskedLM:
    def __init__(self, tok, rate: float = 0.15, whole_word: bool = False, mask_frac: float = 0.8,
                 random_frac: float = 0.1):
        if tok.mask_id is None:
            raise LlmarchError("masked-LM needs a tokenizer with a mask token ([MASK], <mask> or <|mask|>)")
        if not 0 < rate < 1:
            raise LlmarchError(f"mask_rate must be in (0, 1), got {rate}")
        self.rate, self.mask_frac, self.random_frac = rate, mask_frac, random_frac
        self.mask_id, self.vocab_size = tok.mask_id, tok.vocab_size
        self.special = np.zeros(tok.vocab_size, dtype=bool)
        self.special[[tok.eos_id, tok.mask_id]] = True
        self.first_word, self.last_word, self.marked = None, None, None
        if whole_word:
            texts = [tok.token_text(i) for i in range(tok.vocab_size)]
            # a token continues the word before it if it is a WordPiece `##` piece, or if it begins with a
            # word character and the previous token ended with one (byte-level BPE marks word starts by the
            # space they carry)
            self.marked = np.array([t.startswith("##") for t in texts])
            self.first_word = np.array([bool(t) and _is_word_char(t[0]) for t in texts])
            self.last_word = np.array([bool(t) and _is_word_char(t[-1]) for t in texts])

    def word_ids(self, ids: np.ndarray) -> np.ndarray:
        """(B, T) -> (B, T) ids of the word each token belongs to (unique across the batch)."""
        cont = self.marked[ids] | (self.first_word[ids] & np.roll(self.last_word[ids], 1, axis=1))
        cont[:, 0] = False
        cont &= ~self.special[ids] & ~np.roll(self.special[ids], 1, axis=1)
        return np.cumsum(~cont.ravel()).reshape(ids.shape)

    def select(self, ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        eligible = ~self.special[ids]
        if self.first_word is None:
            chosen = rng.random(ids.shape) < self.rate
        else:
            words = self.word_ids(ids)
            chosen = (rng.random(words.max() + 1) < self.rate)[words]
        chosen &= eligible
        if not chosen.any() and eligible.any():  # every batch predicts something (no 0/0 loss)
            chosen.flat[np.flatnonzero(eligible)[0]] = True
        return chosen

    def __call__(self, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator):
        ids = x.numpy()
        chosen = self.select(ids, rng)
        action = rng.random(ids.shape)
        masked = chosen & (action < self.mask_frac)
        randomised = chosen & (action >= self.mask_frac) & (action < self.mask_frac + self.random_frac)
        inputs = ids.copy()
        inputs[masked] = self.mask_id
        inputs[randomised] = rng.integers(0, self.vocab_size, size=int(randomised.sum()))
        targets = np.where(chosen, ids, IGNORE)
        return torch.from_numpy(inputs), torch.from_numpy(targets)

    def rows(self, x: torch.Tensor, y: torch.Tensor, rngs: list[np.random.Generator]):
        """Each row masked by its own generator: what evaluation draws, the same at any batch size."""
        parts = [self(x[i:i + 1], y[i:i + 1], rng) for i, rng in enumerate(rngs)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


class Denoising:
    """span (T5) or infill (BART) on each window: the corrupted window is the source, the target is what
    the decoder must produce (the dropped spans after their sentinels, or the whole window), both ending in eos.
    Windows are cut one token short so source and target, eos included, fit the context."""

    def __init__(self, kind: str, tok, context: int, rate: float | None = None):
        from .noising import span_corruption, text_infilling

        self.tok, self.context = tok, context
        if kind == "span":
            if not tok.sentinel_ids:
                raise LlmarchError("span corruption needs a tokenizer with sentinel tokens")
            self.corrupt = lambda ids, rng: span_corruption(ids, tok.sentinel_ids, tok.eos_id, rng,
                                                            noise_density=rate or 0.15)
        else:
            if tok.mask_id is None:
                raise LlmarchError("text infilling needs a tokenizer with a mask token")
            self.corrupt = lambda ids, rng: text_infilling(ids, tok.mask_id, rng, mask_ratio=rate or 0.3,
                                                           eos_id=tok.eos_id)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator):
        return self.rows(x, y, [rng] * len(x))

    def rows(self, x: torch.Tensor, y: torch.Tensor, rngs: list[np.random.Generator]):
        """Each row corrupted by its generator (one shared: a training batch; one each: evaluation, the same at
        any batch size)."""
        from ..data.seq2seq import seq2seq_batch

        pairs = [self.corrupt(row[: self.context - 1].tolist(), rng) for row, rng in zip(x, rngs)]
        batch = seq2seq_batch(pairs, self.tok.eos_id, self.tok.eos_id, self.context, self.context)
        return {k: batch[k] for k in ("input_ids", "attention_mask", "decoder_input_ids")}, batch["labels"]


def objective_for(name: str, tok, mask_rate: float = 0.15, whole_word: bool = False,
                  context: int | None = None, noise_rate: float | None = None) -> Objective:
    if name == "clm":
        return causal_lm
    if name == "mlm":
        return MaskedLM(tok, mask_rate, whole_word)
    if name in SEQ2SEQ_OBJECTIVES:
        return Denoising(name, tok, context or 512, noise_rate)
    raise LlmarchError(f"unknown objective {name!r}; choose one of: {', '.join(OBJECTIVES)}")


def check_objective(name: str, cfg) -> None:
    """A causal model cannot learn to fill masks from both sides; a bidirectional one would see the token it
    must predict next."""
    if cfg.is_encoder_decoder != (name in SEQ2SEQ_OBJECTIVES):
        kind = "an encoder-decoder" if cfg.is_encoder_decoder else "not an encoder-decoder"
        raise LlmarchError(f"{cfg.name} is {kind}: objective {name} does not fit it; encoder-decoders train with "
                           f"{' or '.join(SEQ2SEQ_OBJECTIVES)}, other models with clm or mlm")
    if name == "clm" and not cfg.causal:
        raise LlmarchError(f"{cfg.name} is bidirectional (causal=False): causal-LM training would let it see the "
                           "tokens it predicts; use --objective mlm")
    if name == "mlm" and cfg.causal:
        raise LlmarchError(f"{cfg.name} is causal: masked-LM training needs a bidirectional model (causal=False)")
