"""Speculative decoding with prompt lookup against plain greedy decoding at batch 1, on CPU: a checkpoint (default
`runs/demo`, what `make demo` trains: llama-tiny on Python's standard library) continues code prompts whose
spans repeat. Reports tokens per second of both (median of --repeats, the two timed in turns), the speed-up, the
share of drafted tokens kept and the tokens per forward, and checks that both give the same tokens.

    python benchmarks/prompt_lookup.py --checkpoint runs/demo --num-draft 8"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

PROMPTS = [
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n\n"
    "    def __repr__(self):\n        return f'Point({self.x}, {self.y})'\n\n"
    "class Size:\n    def __init__(self, width, height):\n",
    "def get_name(self):\n    return self._name\n\ndef set_name(self, value):\n    self._name = value\n\n"
    "def get_path(self):\n    return self._path\n\ndef set_path(self, value):\n",
    "import os\nimport sys\n\n\ndef main(argv):\n    if len(argv) < 2:\n        print('usage')\n"
    "        return 1\n    path = argv[1]\n    if not os.path.exists(path):\n",
]


def main() -> None:
    from llmarch.cli.options import load_with_tokenizer
    from llmarch.generate import generate
    from llmarch.generate.speculative import prompt_lookup_generate

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="runs/demo")
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--num-draft", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(2)
    model, tok = load_with_tokenizer(args.checkpoint)
    prompts = [tok.encode(t) for t in PROMPTS]
    plain_s, lookup_s, stats, same = [], [], [], True
    for r in range(args.repeats + 1):  # round 0 warms up
        t0 = time.perf_counter()
        plain = [generate(model, [ids], args.new_tokens)[0] for ids in prompts]
        t1 = time.perf_counter()
        runs = [{} for _ in prompts]
        fast = [prompt_lookup_generate(model, ids, args.new_tokens, args.num_draft, stats=s)
                for ids, s in zip(prompts, runs)]
        t2 = time.perf_counter()
        same = same and plain == fast
        if r:
            plain_s.append(t1 - t0)
            lookup_s.append(t2 - t1)
            stats = runs
    tokens = sum(len(o) - len(i) for o, i in zip(plain, prompts))
    drafted, accepted, steps = (sum(s[k] for s in stats) for k in ("drafted", "accepted", "steps"))
    results = {
        "checkpoint": str(Path(args.checkpoint)), "new_tokens": tokens, "num_draft": args.num_draft,
        "same_tokens": same,
        "plain_tokens_per_s": round(tokens / statistics.median(plain_s), 1),
        "prompt_lookup_tokens_per_s": round(tokens / statistics.median(lookup_s), 1),
        "speedup": round(statistics.median(plain_s) / statistics.median(lookup_s), 2),
        "accepted_share": round(accepted / max(drafted, 1), 3),
        "tokens_per_forward": round(tokens / (steps + len(prompts)), 2),
    }
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
