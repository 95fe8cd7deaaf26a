"""Speculative decoding with a draft model (Leviathan et al. 2023, "Fast Inference from Transformers via
Speculative Decoding"; Chen et al. 2023, "Accelerating Large Language Model Decoding with Speculative Sampling").
A small model with the same vocabulary proposes k tokens, one at a time from its own decode state; the target
reads the last token and all k in one forward (Engine.extend), which gives its distribution p after each of
them, and keeps a prefix of the proposal plus one token of its own. Both engines then rewind past what was not
kept. One target forward yields 1 to k + 1 tokens, so decoding is faster where the draft is much cheaper than
the target and usually agrees with it.

Greedy (temperature 0): a drafted token is kept while it is the target's argmax, and the target's argmax follows
the kept prefix, so the output is the target's own greedy decoding (up to ties between logits that a different
summation order can flip). Sampled: Leviathan et al. Algorithm 1 (Chen et al. Algorithm 2). Drafted token x,
drawn from the draft's q, is kept with probability min(1, p(x) / q(x)); at the first rejection the token is
drawn from norm(max(0, p - q)) instead, and after k kept tokens a bonus token is drawn from the target's next p.
Each output token is then distributed exactly as p (Leviathan et al. Theorem 3.5). Temperature, top-k and top-p
shape p and q alike (sampling.probabilities), so "p" is the distribution the target alone would sample from.

Decoder-only models whose decode states can rewind (KV caches: Engine.check_rewind names a mixer that cannot).
Each prompt is decoded alone (batch 1)."""
from __future__ import annotations

import torch

from ..errors import LlmarchError
from ..models.stack import check_ids
from .assistant import Assisted, check_assistant
from .engine import Engine
from .penalties import Penalties
from .sampling import draw, probabilities
from .speculative import Speculator, add_counts, ending_ids, speculate


def check_draft(target, draft, num_draft: int) -> None:
    """A draft that can propose for this target: decoder-only, the same vocabulary, num_draft >= 1; a drafter that
    reads the target's states (draft_target_width: assistant.py), one that fits the target."""
    if draft.config.draft_target_width:
        check_assistant(target, draft, num_draft)
        return
    for role, model in (("target", target), ("draft", draft)):
        if model.config.is_encoder_decoder or not model.config.causal or model.config.head != "lm":
            raise LlmarchError(f"speculative decoding: the {role} {model.config.name} is not a decoder-only "
                               "language model")
        if model.config.prefix_bidirectional:  # a draft verified in one call would see itself both ways
            raise LlmarchError(f"speculative decoding: the {role} {model.config.name} is a prefix LM "
                               "(prefix_bidirectional), which reads several tokens of a call both ways")
    if draft.config.vocab_size != target.config.vocab_size:
        raise LlmarchError(f"the draft's vocabulary ({draft.config.vocab_size} tokens) is not the target's "
                           f"({target.config.vocab_size}): a draft must share the target's tokenizer")
    if num_draft < 1:
        raise LlmarchError(f"num_draft must be >= 1, got {num_draft}")


def draft_rows(target, draft, prompts, max_new_tokens: int, num_draft: int, temperature: float, top_k, top_p,
               eos_id: int | None, stop, generator, on_tokens=None, stats: dict | None = None,
               penalties: Penalties | None = None) -> list[list[int]]:
    """generate(..., draft=draft, num_draft=k) for prompts given as lists: each decoded alone; stats (if given)
    sums drafted, accepted and steps over them."""
    ends = ending_ids(prompts, eos_id, stop, on_tokens, "speculative decoding")
    rows, counts = [], []
    for prompt in prompts:
        counts.append({})
        rows.append(draft_generate(target, draft, prompt, max_new_tokens, num_draft, temperature, top_k, top_p,
                                   ends, generator, counts[-1], on_tokens, penalties))
    if stats is not None:
        stats.update(add_counts(counts))
    return rows


def draft_generate(target, draft, prompt: list[int], max_new_tokens: int, num_draft: int = 4,
                   temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
                   eos_id: int | set[int] | None = None, generator: torch.Generator | None = None,
                   stats: dict | None = None, on_tokens=None, penalties: Penalties | None = None) -> list[int]:
    """Decoding of one prompt by `target`, with proposals of up to num_draft tokens from `draft` -> prompt + new
    ids (up to and including eos_id, an id or a set of ids that end it). temperature 0: greedy; else sampled
    with top_k / top_p, from `generator`. stats, if given, receives drafted, accepted and steps (target
    forwards); on_tokens, each new id as a (1,) tensor (streaming); penalties (penalties.py) on both models'
    logits, each position's by the tokens before it."""
    if not prompt:
        raise LlmarchError("every prompt needs at least one token")
    ctx = target.config.context_length
    if len(prompt) > ctx:
        raise LlmarchError(f"prompt of {len(prompt)} tokens is longer than the model's context_length {ctx}")
    check_ids(torch.tensor([prompt]), target.config, None)
    total = len(prompt) + max(0, min(max_new_tokens, ctx - len(prompt)))
    with speculator(target, draft, total, num_draft, Sampler(temperature, top_k, top_p, generator),
                    penalties) as spec:
        seq = speculate(spec, prompt, total, eos_id, on_tokens)
    if stats is not None:
        stats.update(spec.counts)
    return seq


def speculator(target, draft, total: int, num_draft: int, sampler: "Sampler",
               penalties: Penalties | None = None) -> Speculator:
    """The rounds of speculative decoding with `draft`: a draft model's (DraftModel), or a drafter's that reads the
    target's states (draft_target_width: assistant.Assisted)."""
    kind = Assisted if draft.config.draft_target_width else DraftModel
    return kind(target, draft, total, num_draft, sampler, penalties)


class DraftModel(Speculator):
    """Rounds in which `draft` proposes up to num_draft tokens and `target` checks them in one forward, for
    sequences of up to `total` tokens; the first round's target forward reads the prompt too."""

    def __init__(self, target, draft, total: int, num_draft: int, sampler: "Sampler",
                 penalties: Penalties | None = None):
        check_draft(target, draft, num_draft)
        self.total, self.num_draft, self.sampler = total, num_draft, sampler
        self.room = min(total, draft.config.context_length)  # the draft's cache: past it the target decodes alone
        super().__init__([(Engine(target, 1, total), "speculative decoding"),
                          (Engine(draft, 1, self.room), "speculative decoding with it as the draft")], penalties)

    @torch.inference_mode()
    def step(self, seq: list[int]) -> list[int]:
        big, small = self.engines
        # the draft reads up to len(seq) + k - 1 slots, the target len(seq) + k, and a round adds <= k + 1
        k = max(0, min(self.num_draft, self.total - len(seq) - 1, self.room - len(seq) + 1))
        proposal, q = propose(small, seq, k, self.sampler, lambda logits, drafted: self.penalized(seq, logits,
                                                                                                  drafted))
        pending = torch.tensor([seq[big.length:] + proposal], device=big.slots.device)
        logits = big.extend(pending)[0, -(k + 1):]  # (k + 1, V): after seq[-1], each draft
        p = self.sampler.distribution(self.penalized(seq, logits, proposal))
        n, token = self.sampler.verify(p, q, proposal)
        big.rewind(len(seq) + n)  # it has read seq and the n kept drafts; `token` is read next round
        small.rewind(min(small.length, len(seq) + n))
        self.count(k, n)
        return self.took(proposal[:n] + [token])


def propose(small: Engine, seq: list[int], k: int, sampler: "Sampler",
            penalized=None) -> tuple[list[int], torch.Tensor | None]:
    """k tokens from the draft after seq, and q (k, V), the distribution each was drawn from (None: greedy).
    The draft first reads what of seq it has not (the last one or two tokens, or the prompt). penalized(logits,
    drafted): the penalties on the draft's logits after the tokens it drafted so far (the target's, so that the
    draft proposes what the penalized target would)."""
    if k == 0:
        return [], None
    logits = small.prefill(torch.tensor([seq[small.length:]], device=small.slots.device))  # (1, V)
    tokens, dists = [], []
    for i in range(k):
        q = sampler.distribution(logits if penalized is None else penalized(logits, torch.cat(tokens).tolist()
                                                                            if tokens else []))
        token = q.argmax(-1) if sampler.greedy else draw(q, sampler.generator)  # (1,)
        tokens.append(token)
        dists.append(q)
        if i < k - 1:
            logits = small.decode(token)
    return torch.cat(tokens).tolist(), None if sampler.greedy else torch.cat(dists)


class Sampler:
    """The target's sampling settings, applied to both models' logits, and the rule that keeps drafts."""

    def __init__(self, temperature: float, top_k: int | None, top_p: float | None, generator):
        self.greedy = temperature <= 0
        self.temperature, self.top_k, self.top_p, self.generator = temperature, top_k, top_p, generator

    def distribution(self, logits: torch.Tensor) -> torch.Tensor:
        """logits (T, V) -> what sampling draws from (T, V); greedy: the logits themselves (only argmax used)."""
        return logits if self.greedy else probabilities(logits, self.temperature, self.top_k, self.top_p)

    def verify(self, p: torch.Tensor, q: torch.Tensor | None, proposal: list[int]) -> tuple[int, int]:
        """p (k + 1, V): the target's distributions after the last token and each drafted one; q (k, V): the
        draft's -> (drafted tokens kept, the token after them)."""
        k = len(proposal)
        if self.greedy:
            best = p.argmax(-1).tolist()
            n = next((i for i in range(k) if proposal[i] != best[i]), k)
            return n, best[n]
        n = self.kept(p, q, proposal) if k else 0
        if n == k:
            return k, int(draw(p[k:], self.generator))  # every draft kept: a bonus token from p
        residual = (p[n] - q[n]).clamp(min=0)  # norm(max(0, p - q)): what p has beyond q
        total = residual.sum()
        # p == q up to rounding leaves nothing; a rejection then had probability ~0, and p is the answer
        residual = residual / total if total > 0 else p[n]
        return n, int(draw(residual[None], self.generator))

    def kept(self, p: torch.Tensor, q: torch.Tensor, proposal: list[int]) -> int:
        """Algorithm 1: keep x_i while u_i < p(x_i) / q(x_i), u_i ~ U(0, 1) (q(x_i) > 0: x_i was drawn from q)."""
        k = len(proposal)
        rows, ids = torch.arange(k, device=p.device), torch.tensor(proposal, device=p.device)
        u = torch.rand(k, generator=self.generator, device=p.device)
        rejected = (u * q[rows, ids] >= p[rows, ids]).tolist()
        return next((i for i in range(k) if rejected[i]), k)
