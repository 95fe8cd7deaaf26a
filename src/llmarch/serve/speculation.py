"""Speculative decoding in the server (generate/speculative.py's prompt lookup, or generate/draft_model.py's draft
model): which requests it decodes, and their speculator. A request decodes speculatively when it starts alone:
nothing else running or waiting, one choice, no log-probabilities (and temperature 0 for prompt lookup, which is
greedy only); its penalties (presence, frequency, repetition, logit bias) apply to each drafted position as plain
decoding would have applied them there (Speculator.penalized), and its penalty state travels with it between
speculating alone and the batch. It then runs the generate path's rounds over engines of its own, one round per turn
of the scheduler; when another request arrives, its decode state moves into the running batch (the target has read
all its tokens but the last: Speculator) and it goes on with plain continuous batching, until it is alone again (the
others done, nothing waiting) with more tokens to go than a round drafts: then it leaves the batch and speculates
again, its speculator first reading the prompt and the tokens so far. Greedy output is the target's own either way,
and sampled output keeps the target's distribution (Leviathan et al. 2023, Theorem 3.5), though with a seed it draws
different tokens than plain decoding."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import LlmarchError
from ..generate.draft_model import Sampler, check_draft, speculator
from ..generate.speculative import PromptLookup, Speculator


@dataclass
class Speculation:
    num_draft: int  # tokens drafted per round (prompt lookup: at most)
    draft: torch.nn.Module | None = None  # the draft model; None: prompt lookup

    def check(self, model) -> None:
        """Refuses a target (or draft) that cannot speculate: a draft of another vocabulary, num_draft < 1, a
        decode state that cannot rewind (the same checks as generate's, on one-slot engines)."""
        if self.num_draft < 1:
            raise LlmarchError(f"speculative decoding drafts >= 1 token per round, got {self.num_draft}")
        if self.draft is not None:
            check_draft(model, self.draft, self.num_draft)
        with self._speculator(model, 1, Sampler(0.0, None, None, None)):
            pass

    def applies(self, job) -> bool:
        """Whether a request (scheduler.Job) alone in the server decodes speculatively."""
        plain = (job.n != 1 or job.logprobs is not None or job.echo_logprobs or job.max_new == 0
                 or job.images is not None)  # a speculator reads token ids, never images
        return not plain and (self.draft is not None or job.temperature == 0)

    def start(self, model, job, generator: torch.Generator | None, seen=None) -> Speculator:
        """The speculator for a request (its prompt and new tokens), sampling from `generator`; seen: its penalty
        state so far (generate/penalties.Seen) where it resumes from the batch, None: taken from its prompt."""
        sampler = Sampler(job.temperature, job.top_k, job.top_p, generator)
        spec = self._speculator(model, len(job.prompt) + job.max_new, sampler, job.penalties)
        spec.seen = seen
        return spec

    def _speculator(self, model, total: int, sampler: Sampler, penalties=None) -> Speculator:
        if self.draft is None:
            return PromptLookup(model, total, self.num_draft, penalties=penalties)
        return speculator(model, self.draft, total, self.num_draft, sampler, penalties)
