"""The scheduler: one thread that owns the model and its running batch (generate/batch.py). Requests wait in a
bounded queue; between two decode steps the thread lets waiting requests join (each prefilled alone, its n
choices taking n free rows), drops choices whose client went away, and decodes one token for every row. What a
choice produces goes back to its request as events, on the request's event loop (call_soon_threadsafe).
With speculative decoding on (speculation.py), a request that starts alone decodes a speculative round per turn
instead, until another request arrives and it joins the running batch."""
from __future__ import annotations

import asyncio
import collections
import threading
import time
from dataclasses import dataclass, field

import torch

from ..errors import LlmarchError
from ..generate.batch import RunningBatch
from ..generate.penalties import Penalties, Seen
from ..generate.sampling import sample
from ..generate.speculative import Speculator
from .metrics import Metrics
from .speculation import Speculation


class QueueFull(LlmarchError):
    """More requests wait than the queue holds (HTTP 503)."""


class StepFailed(LlmarchError):
    """The model failed on a request's step (HTTP 500); the server goes on with the others."""


@dataclass
class Job:
    """One prompt, its n choices and how to decode them. Events put on `events`, after the job's index:
    ("prompt", [(token, logprob, top)]) for echo, ("token", choice, token, logprob, top), ("done", choice,
    finish_reason), ("error", text)."""
    prompt: list[int]
    max_new: int
    n: int = 1
    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    logprobs: int | None = None  # top alternatives per token (0: the chosen token's only); None: no logprobs
    echo_logprobs: bool = False  # the prompt's log-probabilities too (completions' echo)
    loop: asyncio.AbstractEventLoop | None = None
    events: asyncio.Queue | None = None  # shared by a request's jobs: each event starts with the job's index
    index: int = 0
    cancelled: set = field(default_factory=set)  # choices whose client or stop string ended them
    submitted: float = field(default_factory=time.perf_counter)
    penalties: Penalties | None = None  # generate/penalties.py, on each choice's own tokens (and its prompt's)
    # the model's image arguments for the prompt's image tokens (vision/prompts.py: pixel_values, and image_grid_thw
    # for Qwen-VL); None: a text prompt
    images: dict | None = None

    def emit(self, *event) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, (self.index, *event))

    def cancel(self, choice: int | None = None) -> None:
        """Stop a choice (None: all) at the next token boundary, freeing its row."""
        self.cancelled.update(range(self.n) if choice is None else (choice,))


@dataclass
class _Row:
    job: Job
    choice: int
    generator: torch.Generator | None
    tokens: list[int] = field(default_factory=list)  # the tokens emitted, in order
    seen: Seen | None = None  # what the job's penalties read


@dataclass
class _Alone:
    """A request decoding speculatively, alone: its row-to-be and its speculator."""
    row: _Row
    spec: Speculator

    @property
    def seq(self) -> list[int]:
        """The prompt and the tokens so far, what the speculator's rounds read."""
        return list(self.row.job.prompt) + self.row.tokens


class Scheduler:
    def __init__(self, model, tokenizer, max_batch: int = 8, max_queue: int = 64, metrics: Metrics | None = None,
                 speculation: Speculation | None = None):
        self.model, self.speculation = model, speculation
        self.alone: _Alone | None = None
        self.batch = RunningBatch(model, max_batch)
        self.tokenizer, self.max_batch, self.max_queue = tokenizer, max_batch, max_queue
        self.metrics = metrics or Metrics()
        self.waiting: collections.deque[Job] = collections.deque()
        self.rows: dict[int, _Row] = {}
        self.next = torch.zeros(max_batch, dtype=torch.long, device=self.batch.mask.device)
        self.wake = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="llmarch-scheduler", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        with self.wake:
            self.stopping = True
            self.wake.notify()
        self.thread.join()
        if self.alone is not None:
            self._end_alone()
        self.batch.close()

    def submit(self, job: Job) -> None:
        if job.n > self.max_batch:
            raise LlmarchError(f"n={job.n} is more than the server's --max-batch {self.max_batch}")
        with self.wake:
            if len(self.waiting) >= self.max_queue:
                raise QueueFull(f"{len(self.waiting)} requests are waiting (the queue holds {self.max_queue}); "
                                "try again later")
            self.waiting.append(job)
            self.metrics.queue = len(self.waiting)
            self.wake.notify()

    # ---- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self.wake:
                while not self.stopping and not self.waiting and not self.rows and self.alone is None:
                    self.wake.wait()
                if self.stopping:
                    return
            try:
                self._admit()
                self._drop_cancelled()
                if self.alone is not None:
                    self._speculate()
                elif self.rows:
                    self._step()
                    self._resume()
            except Exception as e:  # noqa: BLE001 - a failed step fails its requests, not the server
                failed = [self.rows[row].job for row in self.rows]
                failed += [] if self.alone is None else [self.alone.row.job]
                for job in failed:
                    job.emit("error", f"{type(e).__name__}: {e}")
                for row in list(self.rows):
                    self._leave(row)
                if self.alone is not None:
                    self._end_alone()

    def _admit(self) -> None:
        if self.alone is not None and self.waiting:
            self._share()
        while self.alone is None:  # nothing joins the batch while a request decodes alone
            with self.wake:
                free = self.batch.free_rows()
                if not self.waiting or len(free) < self.waiting[0].n:
                    return
                job = self.waiting.popleft()
                self.metrics.queue = len(self.waiting)
                alone = (self.speculation is not None and not self.rows and not self.waiting
                         and self.speculation.applies(job))
            if job.cancelled >= set(range(job.n)):
                continue
            try:
                if alone:
                    self._start_alone(job)
                else:
                    self._prefill(job, free)
            except Exception as e:  # noqa: BLE001
                for row, r in list(self.rows.items()):  # a failed request leaves no row decoding for nobody
                    if r.job is job:
                        self._leave(row)
                job.emit("error", f"{type(e).__name__}: {e}")

    def _prefill(self, job: Job, free: list[int]) -> None:
        states, logits = self.batch.prefill(job.prompt, all_logits=job.echo_logprobs, images=job.images)
        delta = self.batch.rope_delta(job.prompt, job.images)  # Qwen-VL's images shift every later position
        self.metrics.prompt_tokens += len(job.prompt)
        if job.echo_logprobs:
            logp = logits.float().log_softmax(-1)
            rows = [(job.prompt[0], None, None)]
            for i, t in enumerate(job.prompt[1:]):
                rows.append((t, float(logp[i, t]), self._top(logp[i], job.logprobs)))
            job.emit("prompt", rows)
            logits = logits[-1]
        if job.max_new == 0:
            for c in range(job.n):
                job.emit("done", c, "length")
            return
        first = logits[None].expand(job.n, -1)
        gens = [None if job.seed is None else torch.Generator(device=first.device).manual_seed(job.seed + c)
                for c in range(job.n)]  # before any row joins: a bad seed fails the request with nothing taken
        prompt = torch.tensor([job.prompt], device=first.device)
        for c, gen in enumerate(gens):
            row = free[c]
            self.batch.join(row, states, len(job.prompt), delta)
            seen = None if job.penalties is None else job.penalties.start(prompt, first.shape[-1])
            self.rows[row] = _Row(job, c, gen, seen=seen)
            self._emit(row, first[c])
        self.metrics.ttft.observe(time.perf_counter() - job.submitted)

    def _drop_cancelled(self) -> None:
        for row, r in list(self.rows.items()):
            if r.choice in r.job.cancelled:
                self._leave(row)
        if self.alone is not None and self.alone.row.choice in self.alone.row.job.cancelled:
            self._end_alone()

    def _step(self) -> None:
        t0, rows = time.perf_counter(), list(self.rows)
        logits = self.batch.decode(self.next)
        for row in rows:
            self._emit(row, logits[row])
        self.metrics.step(len(rows), time.perf_counter() - t0)

    def _emit(self, row: int, logits: torch.Tensor) -> None:
        """Choose row's next token from logits (V,), hand it to its job, and end the row if it is done."""
        r = self.rows[row]
        job = r.job
        scores = logits[None] if r.seen is None else r.seen.apply(logits[None])
        tok = int(sample(scores, job.temperature, job.top_k, job.top_p, r.generator)[0])
        self.next[row] = tok
        if r.seen is not None:
            r.seen.add(self.next[row:row + 1])
        logprob = top = None  # the model's own log-probabilities, before any penalty (as vLLM's raw logprobs)
        if job.logprobs is not None and tok not in self.tokenizer.eos_ids:
            logp = logits.float().log_softmax(-1)
            logprob, top = float(logp[tok]), self._top(logp, job.logprobs)
        if self._give(r, tok, logprob, top):
            self._leave(row)

    def _give(self, r: _Row, tok: int, logprob: float | None = None, top: list | None = None) -> bool:
        """Hand a choice's new token to its job -> whether the choice is done (an end of text, or max_new)."""
        self.metrics.completion_tokens += 1
        if tok in self.tokenizer.eos_ids:
            r.job.emit("done", r.choice, "stop")
            return True
        r.job.emit("token", r.choice, tok, logprob, top)
        r.tokens.append(tok)
        if len(r.tokens) >= r.job.max_new:
            r.job.emit("done", r.choice, "length")
            return True
        return False

    # ---- speculative decoding of a request alone (speculation.py) ------------------------------
    def _start_alone(self, job: Job) -> None:
        gen = None if job.seed is None else torch.Generator(device=self.next.device).manual_seed(job.seed)
        self.alone = _Alone(_Row(job, 0, gen), self.speculation.start(self.model, job, gen))
        self.metrics.prompt_tokens += len(job.prompt)

    def _speculate(self) -> None:
        """One round: the new tokens (1 to num_draft + 1) handed over one by one, up to the request's end."""
        a, t0 = self.alone, time.perf_counter()
        first = not a.row.tokens
        before = dict(a.spec.counts)
        new = a.spec.step(a.seq)
        self.metrics.speculated(a.spec.counts["drafted"] - before["drafted"],
                                a.spec.counts["accepted"] - before["accepted"])
        for tok in new:
            if self._give(a.row, tok):
                self._end_alone()
                break
        self.metrics.step(1, time.perf_counter() - t0, len(new))
        if first:
            self.metrics.ttft.observe(time.perf_counter() - a.row.job.submitted)

    def _resume(self) -> None:
        """The batch is down to one request that speculation takes and nothing waits: it leaves its row and
        decodes alone again, its speculator first reading the prompt and every token so far (one prefill, paid
        back only with enough tokens left: more than a round drafts)."""
        spec = self.speculation
        if spec is None or len(self.rows) != 1 or self.waiting:
            return
        row, r = next(iter(self.rows.items()))
        if r.job.n != 1 or not spec.applies(r.job) or r.job.max_new - len(r.tokens) <= spec.num_draft + 1:
            return
        self._leave(row)
        self.alone = _Alone(r, spec.start(self.model, r.job, r.generator, r.seen))
        self.metrics.resumed += 1

    def _share(self) -> None:
        """Another request waits: the one decoding alone takes a row of the running batch, with the target's
        decode state of all its tokens but the last, which the next decode step reads."""
        a, row = self.alone, self.batch.free_rows()[0]
        seq = a.seq
        self.batch.join(row, a.spec.target.model.caches(), len(seq) - 1)
        self.next[row] = seq[-1]
        # the penalties' counts so far (None without penalties), which the batch goes on from
        a.row.seen = None if a.spec.seen is None else a.spec.seen.copy()
        self.rows[row] = a.row
        self._end_alone()

    def _end_alone(self) -> None:
        a, self.alone = self.alone, None
        a.spec.close()

    def _leave(self, row: int) -> None:
        self.batch.leave(row)
        del self.rows[row]

    @staticmethod
    def _top(logp: torch.Tensor, k: int | None) -> list[tuple[int, float]]:
        if not k:
            return []
        values, ids = logp.topk(k)
        return list(zip(ids.tolist(), values.tolist()))
