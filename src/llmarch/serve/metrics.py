"""What /metrics reports, in Prometheus' text exposition format (version 0.0.4): counters of requests and tokens,
gauges of the queue, the running batch and decoding speed, a histogram of the time to first token, and the tokens
speculative decoding drafted and the target accepted."""
from __future__ import annotations

import collections
import threading

TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Histogram:
    def __init__(self, buckets: tuple[float, ...]):
        self.buckets, self.counts, self.sum, self.count = buckets, [0] * len(buckets), 0.0, 0
        self.lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self.lock:
            for i, upper in enumerate(self.buckets):
                if value <= upper:
                    self.counts[i] += 1
            self.sum += value
            self.count += 1

    def lines(self, name: str) -> list[str]:
        with self.lock:
            out = [f'{name}_bucket{{le="{upper}"}} {c}' for upper, c in zip(self.buckets, self.counts)]
            return out + [f'{name}_bucket{{le="+Inf"}} {self.count}', f"{name}_sum {self.sum}",
                          f"{name}_count {self.count}"]


class Metrics:
    def __init__(self):
        self.requests: collections.Counter = collections.Counter()  # (endpoint, status code) -> count
        self.prompt_tokens = self.completion_tokens = 0
        self.queue = self.batch = 0
        self.tokens_per_s = 0.0  # of the last decode step: tokens decoded / its seconds
        self.drafted = self.accepted = 0  # speculative decoding's drafted tokens, and those the target kept
        self.resumed = 0  # requests that left the running batch to decode speculatively again
        self.ttft = Histogram(TTFT_BUCKETS)

    def step(self, rows: int, seconds: float, tokens: int | None = None) -> None:
        """A decode step of `rows` rows that produced `tokens` tokens (default: one a row)."""
        self.batch = rows
        self.tokens_per_s = (rows if tokens is None else tokens) / seconds if seconds > 0 else 0.0

    def speculated(self, drafted: int, accepted: int) -> None:
        self.drafted += drafted
        self.accepted += accepted

    def render(self) -> str:
        out = ["# HELP llmarch_requests_total HTTP requests answered, by endpoint and status.",
               "# TYPE llmarch_requests_total counter"]
        out += [f'llmarch_requests_total{{endpoint="{e}",status="{s}"}} {n}' for (e, s), n in
                sorted(self.requests.items())]
        for name, kind, value, text in (
                ("llmarch_prompt_tokens_total", "counter", self.prompt_tokens, "Prompt tokens prefilled."),
                ("llmarch_generation_tokens_total", "counter", self.completion_tokens, "Tokens generated."),
                ("llmarch_queue_length", "gauge", self.queue, "Requests waiting for rows of the batch."),
                ("llmarch_batch_size", "gauge", self.batch, "Rows decoded in the last step."),
                ("llmarch_tokens_per_second", "gauge", self.tokens_per_s, "Tokens per second of the last step."),
                ("llmarch_speculative_drafted_tokens_total", "counter", self.drafted,
                 "Tokens drafted by speculative decoding (prompt lookup or the draft model)."),
                ("llmarch_speculative_accepted_tokens_total", "counter", self.accepted,
                 "Drafted tokens the target model accepted."),
                ("llmarch_speculative_resumed_total", "counter", self.resumed,
                 "Requests that left the running batch, alone again, to decode speculatively.")):
            out += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name} {value}"]
        out += ["# HELP llmarch_time_to_first_token_seconds From a request's arrival to its first token.",
                "# TYPE llmarch_time_to_first_token_seconds histogram"]
        out += self.ttft.lines("llmarch_time_to_first_token_seconds")
        return "\n".join(out) + "\n"
