"""Speculative decoding in `llmarch serve` against plain serving, one client at a time (batch 1, where it
applies): two `llmarch serve` processes of the same checkpoint (default `runs/demo`, what `make demo` trains), one
plain and one with --speculation's flags (default `--prompt-lookup 8`), each asked the same greedy completions of
code prompts whose spans repeat (benchmarks/prompt_lookup.py's), in turns. Reports completion tokens per second of
both (median of --repeats rounds after a warm-up), the speed-up, the drafted and accepted tokens from the
speculative server's /metrics, and whether both servers gave the same text.

    python benchmarks/serve_speculative.py --checkpoint runs/demo --speculation "--prompt-lookup 8" """
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import time
from pathlib import Path

import httpx
import openai
from prompt_lookup import PROMPTS
from serve_load import start_server


def metric(url: str, name: str) -> int:
    return int(float(next(line.split()[-1] for line in httpx.get(url + "/metrics").text.splitlines()
                          if line.startswith(name + " "))))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="runs/demo")
    p.add_argument("--speculation", default="--prompt-lookup 8", help="the speculative server's extra flags")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    servers = [start_server(Path(args.checkpoint), 1, 4, extra) for extra in ([], shlex.split(args.speculation))]
    try:
        clients = [openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=600)
                   for _, url in servers]
        seconds, texts, tokens = [[], []], [[], []], 0
        for r in range(args.repeats + 1):  # round 0 warms up
            for i in (0, 1) if r % 2 else (1, 0):  # the order alternates
                t0 = time.perf_counter()
                out = [clients[i].completions.create(model="tiny", prompt=q, max_tokens=args.max_tokens, temperature=0)
                       for q in PROMPTS]
                if r:
                    seconds[i].append(time.perf_counter() - t0)
                texts[i] = [o.choices[0].text for o in out]
                tokens = sum(o.usage.completion_tokens for o in out)
        url = servers[1][1]
        drafted = metric(url, "llmarch_speculative_drafted_tokens_total")
        accepted = metric(url, "llmarch_speculative_accepted_tokens_total")
    finally:
        for proc, _ in servers:
            proc.terminate()
            proc.wait()
    plain, fast = (statistics.median(s) for s in seconds)
    results = {
        "checkpoint": args.checkpoint, "speculation": args.speculation, "completion_tokens": tokens,
        "same_text": texts[0] == texts[1],
        "plain_tokens_per_s": round(tokens / plain, 1), "speculative_tokens_per_s": round(tokens / fast, 1),
        "speedup": round(plain / fast, 2), "drafted": drafted, "accepted": accepted,
        "accepted_share": round(accepted / max(drafted, 1), 3),
    }
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
