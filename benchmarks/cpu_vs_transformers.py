"""Training step and greedy decoding of a gpt-tiny-shaped model: llmarch against transformers'
GPT2LMHeadModel with identical shape and weights, in one run, on CPU. The contenders take turns (one repeat of
each, then the next round), so a neighbour's load on a shared machine slows all of them alike; each figure is the
median over rounds, and each speed-up the median of the per-round ratios.

    .venv/bin/python benchmarks/cpu_vs_transformers.py --out bench.json
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile

import torch
import torch.nn.functional as F
import transformers

import llmarch
from llmarch.bench.model import round_times
from llmarch.layers.split_linear import SplitLinear
from llmarch.interop import to_hf


def rates(work: float, ours: list, theirs: list) -> dict:
    """Work per second (median over round_times' rounds) of both, and the median of the per-round speed-ups."""
    return {"llmarch": work / statistics.median(ours), "transformers": work / statistics.median(theirs),
            "speedup": statistics.median(t / o for o, t in zip(ours, theirs))}


def train_step_fn(model, logits_of, x, y):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        loss = F.cross_entropy(logits_of(x).flatten(0, 1), y.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=9, help="timed rounds (each times every contender once)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for both libraries (default: torch's)")
    ap.add_argument("--out", default=None, help="write results as JSON here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    ours = llmarch.build("gpt-tiny")
    cfg = ours.config
    with tempfile.TemporaryDirectory() as tmp:  # the same weights, through llmarch's own HF export
        to_hf(ours, tmp)
        hf = transformers.GPT2LMHeadModel.from_pretrained(tmp, attn_implementation="sdpa")

    x = torch.randint(0, cfg.vocab_size, (args.batch_size, args.context))
    y = torch.roll(x, -1, dims=1)
    tokens = args.batch_size * args.context
    results = {"model": "gpt-tiny", "parameters": sum(p.numel() for p in ours.parameters()),
               "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
               "torch": torch.__version__, "transformers": transformers.__version__, "repeats": args.repeats}

    ours.train(), hf.train()
    cpu = torch.device("cpu")
    t = round_times({"ours": train_step_fn(ours, lambda t: ours(t).logits, x, y),
                     "hf": train_step_fn(hf, lambda t: hf(t).logits, x, y)}, args.repeats, cpu, warmup=2)
    results["train_tokens_per_s"] = rates(tokens, t["ours"], t["hf"])

    ours.eval(), hf.eval()  # llmarch.generate lays the model out for CPU decoding itself (generate/engine.py)
    # transformers' model as users get it (from_pretrained: weights memory-mapped from the file) and as
    # constructed in memory with the same weights copied in; the two decode at different speeds here.
    in_memory = transformers.GPT2LMHeadModel(hf.config).eval()
    in_memory.load_state_dict(hf.state_dict())
    prompt = torch.randint(0, cfg.vocab_size, (1, args.prompt_tokens))
    n = args.new_tokens
    mask = torch.ones_like(prompt)

    def hf_generate(model):
        with torch.no_grad():
            return model.generate(prompt, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                  pad_token_id=0)

    same = torch.equal(llmarch.generate(ours, prompt, max_new_tokens=n), hf_generate(hf))
    t = round_times({"ours": lambda: llmarch.generate(ours, prompt, max_new_tokens=n),
                     "hf": lambda: hf_generate(hf), "in_memory": lambda: hf_generate(in_memory)},
                    args.repeats, cpu, warmup=1)
    results["generate_tokens_per_s"] = {**rates(n, t["ours"], t["hf"]), "same_tokens": same}
    results["generate_tokens_per_s_vs_in_memory"] = rates(n, t["ours"], t["in_memory"])
    # for_cpu_decoding's choice on this machine (llmarch.generate applies it): one-row products split over two
    # cores, or nn.Linear's own where the BLAS threads them already
    results["split_one_row_products"] = any(isinstance(m, SplitLinear) for m in ours.modules())

    print(f"machine: {results['machine']}, torch {results['torch']}, transformers {results['transformers']}")
    print("| benchmark | llmarch | transformers | speed-up |")
    print("|---|---|---|---|")
    for key, label in (("train_tokens_per_s", f"training step, batch {args.batch_size}x{args.context} (tokens/s)"),
                       ("generate_tokens_per_s", f"greedy decode, batch 1, {n} new tokens (tokens/s)"),
                       ("generate_tokens_per_s_vs_in_memory", "the same, transformers' model built in memory")):
        r = results[key]
        print(f"| {label} | {r['llmarch']:,.0f} | {r['transformers']:,.0f} | {r['speedup']:.2f}x |")
    print(f"greedy outputs identical: {same}; one-row products split over two cores: "
          f"{results['split_one_row_products']}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
