"""The scheduler: one thread that owns the model and its running batch (generate/batch.py). Requests wait in a
bounded queue; between two decode steps the thread lets waiting requests join (each prefilled alone, its n
choices taking n free rows), drops choices whose client went away, and decodes one token for every row. What a
choice produces goes back to its request as events, on the request's event loop (call_soon_threadsafe)."""
from __future__ import annotations

import asyncio
import collections
import threading
import time
from dataclasses import dataclass, field

import torch

from ..errors import LlmarchError
from ..generate.batch import RunningBatch
from ..generate.sampling import sample
from .metrics import Metrics


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
    made: int = 0  # tokens emitted


class Scheduler:
    def __init__(self, model, tokenizer, max_batch: int = 8, max_queue: int = 64, metrics: Metrics | None = None):
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
                while not self.stopping and not self.waiting and not self.rows:
                    self.wake.wait()
                if self.stopping:
                    return
            try:
                self._admit()
                self._drop_cancelled()
                if self.rows:
                    self._step()
            except Exception as e:  # noqa: BLE001 - a failed step fails its requests, not the server
                for row in list(self.rows):
                    self.rows[row].job.emit("error", f"{type(e).__name__}: {e}")
                    self._leave(row)

    def _admit(self) -> None:
        while True:
            with self.wake:
                free = self.batch.free_rows()
                if not self.waiting or len(free) < self.waiting[0].n:
                    return
                job = self.waiting.popleft()
                self.metrics.queue = len(self.waiting)
            if job.cancelled >= set(range(job.n)):
                continue
            try:
                self._prefill(job, free)
            except Exception as e:  # noqa: BLE001
                job.emit("error", f"{type(e).__name__}: {e}")

    def _prefill(self, job: Job, free: list[int]) -> None:
        states, logits = self.batch.prefill(job.prompt, all_logits=job.echo_logprobs)
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
        for c in range(job.n):
            gen = None if job.seed is None else torch.Generator(device=first.device).manual_seed(job.seed + c)
            row = free[c]
            self.batch.join(row, states, len(job.prompt))
            self.rows[row] = _Row(job, c, gen)
            self._emit(row, first[c])
        self.metrics.ttft.observe(time.perf_counter() - job.submitted)

    def _drop_cancelled(self) -> None:
        for row, r in list(self.rows.items()):
            if r.choice in r.job.cancelled:
                self._leave(row)

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
        tok = int(sample(logits[None], job.temperature, job.top_k, job.top_p, r.generator)[0])
        self.next[row] = tok
        self.metrics.completion_tokens += 1
        if tok in self.tokenizer.eos_ids:
            job.emit("done", r.choice, "stop")
            self._leave(row)
            return
        logprob = top = None
        if job.logprobs is not None:
            logp = logits.float().log_softmax(-1)
            logprob, top = float(logp[tok]), self._top(logp, job.logprobs)
        job.emit("token", r.choice, tok, logprob, top)
        r.made += 1
        if r.made >= job.max_new:
            job.emit("done", r.choice, "length")
            self._leave(row)

    def _leave(self, row: int) -> None:
        self.batch.leave(row)
        del self.rows[row]

    @staticmethod
    def _top(logp: torch.Tensor, k: int | None) -> list[tuple[int, float]]:
        if not k:
            return []
        values, ids = logp.topk(k)
        return list(zip(ids.tolist(), values.tolist()))
