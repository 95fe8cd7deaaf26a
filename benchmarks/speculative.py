"""Speculative decoding with a draft model against plain decoding at batch 1, on CPU. Target and drafts are
llama models trained here by `llmarch train` on the embedded standard-library corpus where their directory is
absent, by the recipe named after the directory (RECIPES): `demo` (the target: the Makefile's `make demo`,
llama-tiny, 8 layers, d_model 256, 300 steps), `draft` (1 layer, d_model 128, 600 steps on the corpus, so with
the same BPE tokenizer) and `draft-distilled` (the same draft trained instead on the tokens the demo model decoded:
below). Both continue a few code prompts, one at a time (batch 1); each round times, for each prompt in turn,
plain decoding and speculative decoding with each --num-draft, in an order reversed every other time, so a
neighbour's load slows all alike. Reports tokens per second (median over rounds), the speed-up (median and
range of the per-round ratios), the share of drafted tokens accepted and the tokens per target forward (first
timed round; with a fixed seed every round draws the same), and checks that greedy output is the same token
for token.

    python benchmarks/speculative.py --target runs/demo --draft runs/draft --num-draft 2,3,4
    python benchmarks/speculative.py --target runs/demo --draft runs/draft-distilled --num-draft 2,3,4

A draft trained for agreement (Zhou et al. 2023, "DistillSpec": a draft distilled on its target's own outputs
is accepted more often): `draft-distilled` trains on the target's greedy continuations of random 16-token
windows of its training split (the four fixed openings timed here are not chosen from them), written to a
.jsonl as the token ids the target chose (its text tokenized again gives other tokens, often shorter ones, so
a draft trained on the text learns to propose tokens the target does not pick), with the target's tokenizer
taken as it is (`llmarch train --tokenizer CHECKPOINT`)."""
from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import torch

PROMPTS = [
    "def main(",
    "import os\nimport sys\n\n\n",
    "class Error(Exception):\n    ",
    "    def __init__(self, ",
]

DRAFT = ["--model", "llama-tiny", "--n-layers", "1", "--d-model", "128", "--n-heads", "4", "--n-kv-heads", "2",
         "--ffn-hidden", "384", "--steps", "600", "--batch-size", "8", "--eval-every", "200"]
RECIPES = {  # directory name -> (llmarch train's arguments, the target whose greedy tokens it trains on)
    "demo": (["--model", "llama-tiny", "--steps", "300", "--batch-size", "8", "--eval-every", "50"], None),
    "draft": (DRAFT, None),
    "draft-distilled": (DRAFT, "demo"),
}
TEXT_ROWS, TEXT_PROMPT, TEXT_NEW, TEXT_BATCH = 512, 16, 240, 64  # the distillation data: rows, tokens


def ensure(path: str, threads: int) -> None:
    """Train the checkpoint at `path` by the recipe of its directory's name, unless it is there."""
    from llmarch.cli import main

    if Path(path).exists():
        return
    name = Path(path).name
    if name not in RECIPES:
        raise SystemExit(f"{path} does not exist and no recipe is named {name!r} ({', '.join(RECIPES)})")
    args, teacher = RECIPES[name]
    if teacher is not None:
        source = Path(path).parent / teacher
        ensure(str(source), threads)
        tokens = Path(path).parent / f"{teacher}-tokens.jsonl"
        if not tokens.exists():
            write_target_tokens(str(source), tokens)
        args = [*args, "--tokenizer", str(source), "--data", str(tokens)]
    torch.set_num_threads(threads)
    assert main(["train", *args, "--out", path]) == 0


def write_target_tokens(target_dir: str, out: Path) -> None:
    """TEXT_ROWS greedy continuations (TEXT_NEW tokens) by the target of random TEXT_PROMPT-token windows of its
    training split, decoded in batches of TEXT_BATCH rows (batched decoding is many times the throughput of
    batch 1), as a .jsonl of {ids}: the tokens it chose."""
    from llmarch.cli.options import load_with_tokenizer
    from llmarch.data.corpus import read_documents
    from llmarch.data.dataset import split_documents
    from llmarch.generate import generate

    model, tok = load_with_tokenizer(target_dir)
    train_docs, _ = split_documents(read_documents(), 0.05)  # TrainConfig's val_fraction: the target's split
    rng = random.Random(0)
    rows = []
    while len(rows) < TEXT_ROWS:
        prompts = []
        while len(prompts) < TEXT_BATCH:
            ids = tok.encode(rng.choice(train_docs).text)
            if len(ids) > TEXT_PROMPT:
                start = rng.randrange(len(ids) - TEXT_PROMPT)
                prompts.append(ids[start:start + TEXT_PROMPT])
        rows += generate(model, prompts, TEXT_NEW)
        print(f"target's tokens: {len(rows)}/{TEXT_ROWS} rows", flush=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps({"ids": r}) + "\n" for r in rows))
    tmp.rename(out)


def main() -> None:
    from llmarch.cli.generate import load_draft
    from llmarch.cli.options import load_with_tokenizer
    from llmarch.generate import generate

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", default="runs/demo")
    p.add_argument("--draft", default="runs/draft")
    p.add_argument("--new-tokens", type=int, default=96)
    p.add_argument("--num-draft", default="2,3,4", help="comma-separated K to time")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: steady on a shared machine)")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ensure(args.target, args.threads)
    ensure(args.draft, args.threads)
    target, tok = load_with_tokenizer(args.target)
    draft = load_draft(args.draft, target, tok)
    prompts = [tok.encode(t) for t in PROMPTS]
    ks = [int(k) for k in args.num_draft.split(",")]

    def run(k: int | None, ids: list[int], seed: int) -> tuple[float, list, dict]:
        stats: dict = {}
        extra = {} if k is None else dict(draft=draft, num_draft=k, stats=stats)
        sampling = dict(temperature=args.temperature, top_k=50 if args.temperature else None, seed=seed)
        t0 = time.perf_counter()
        out = generate(target, [ids], args.new_tokens, **sampling, **extra)[0]
        return time.perf_counter() - t0, out, stats

    contenders = [None, *ks]
    times = {k: [0.0] * args.repeats for k in contenders}  # per round, all prompts
    counts = {k: dict(drafted=0, accepted=0, steps=0) for k in ks}
    plain, same = {}, True
    for r in range(args.repeats + 1):  # round 0 warms up
        for i, ids in enumerate(prompts):  # in turns per prompt, the order reversed every other round
            for k in contenders if (r + i) % 2 else contenders[::-1]:
                seconds, out, stats = run(k, ids, r)
                if k is None:
                    plain[i] = out
                elif args.temperature == 0:
                    same = same and out == plain.get(i, out)
                if r:
                    times[k][r - 1] += seconds
                    if k is not None and r == 1:
                        counts[k] = {c: counts[k][c] + stats[c] for c in counts[k]}
    tokens = sum(len(plain[i]) - len(ids) for i, ids in enumerate(prompts))
    rows = []
    for k in ks:
        s, ratios = counts[k], sorted(a / b for a, b in zip(times[None], times[k]))
        rows.append({
            "num_draft": k,
            "plain_tokens_per_s": round(tokens / statistics.median(times[None]), 1),
            "speculative_tokens_per_s": round(tokens / statistics.median(times[k]), 1),
            "speedup": round(statistics.median(ratios), 2),
            "speedup_range": [round(ratios[0], 2), round(ratios[-1], 2)],
            "accepted_share": round(s["accepted"] / max(s["drafted"], 1), 3),
            "tokens_per_target_forward": round(tokens / s["steps"], 2),
        })
    results = {"target": args.target, "draft": args.draft, "new_tokens": tokens, "temperature": args.temperature,
               "threads": args.threads, "repeats": args.repeats, "torch": torch.__version__,
               "same_tokens": same if args.temperature == 0 else None, "rows": rows}
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
