"""Weight-only quantization on CPU (llmarch.quant): perplexity on held-out text of the embedded corpus (the
validation split llmarch eval uses) of a model and of its int8, int4 round-to-nearest and int4 HQQ versions;
and batch-1 greedy decoding speed of the same, contenders in turns (llmarch.bench.model.round_times), speed-ups
as medians of per-round ratios against fp32.

    .venv/bin/python benchmarks/quant.py --checkpoint RUN_OR_GGUF --group-size 64 --perplexity --speed
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import subprocess

import torch

import llmarch
from llmarch.bench.model import round_times
from llmarch.data.dataset import load_data
from llmarch.interop.gguf_tokenizer import checkpoint_tokenizer
from llmarch.quant import quantize, weight_bytes
from llmarch.rundir import resolve_checkpoint
from llmarch.train.evaluate import evaluate

METHODS = ("int8", "int4", "int4-hqq")


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def variants(model, group_size: int, head: bool, methods=METHODS) -> dict:
    out = {"fp32": model}
    for method in methods:
        out[method] = quantize(copy.deepcopy(model), method, group_size, head=head)
    return out


def perplexities(models: dict, tok, max_tokens: int, context: int | None) -> dict:
    """Perplexity on the validation split of the embedded corpus, in windows of `context` tokens (default the
    model's context length)."""
    data = load_data(None, tok)
    out = {}
    for name, m in models.items():
        if context:
            m.config = m.config.replace(context_length=context)
        out[name] = evaluate(m, data, 4, max_tokens)["perplexity"]
    return out


def decode_speed(models: dict, tok, prompt_tokens: int, new_tokens: int, repeats: int) -> dict:
    """Greedy decoding after a prompt of real text (the start of the embedded corpus's first long document)."""
    from llmarch.data import read_documents

    text = next(d.text for d in read_documents() if len(d.text) > 8 * prompt_tokens)
    prompt = torch.tensor([tok.encode(text)[:prompt_tokens]])
    outputs = {}

    def run(name, model):
        def fn():
            outputs[name] = llmarch.generate(model, prompt, max_new_tokens=new_tokens, temperature=0)
        return fn

    times = round_times({n: run(n, m) for n, m in models.items()}, repeats, torch.device("cpu"))
    base = times["fp32"]
    return {name: {"decode_tokens_per_s": new_tokens / statistics.median(t),
                   "speedup_vs_fp32": statistics.median(b / x for b, x in zip(base, t)),
                   "greedy_tokens_equal_fp32": bool(torch.equal(outputs[name], outputs["fp32"]))}
            for name, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="llmarch checkpoint or run directory, HF directory or .gguf")
    ap.add_argument("--group-size", type=int, default=64)
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated, compared with fp32")
    ap.add_argument("--keep-head", action="store_true", help="leave the LM head in full precision")
    ap.add_argument("--perplexity", action="store_true")
    ap.add_argument("--max-tokens", type=int, default=16384, help="validation tokens for perplexity")
    ap.add_argument("--eval-context", type=int, default=None, help="perplexity window (default: the model's)")
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    path = resolve_checkpoint(args.checkpoint)
    model, tok = llmarch.load(path).eval(), checkpoint_tokenizer(path)
    models = variants(model, args.group_size, not args.keep_head, args.methods.split(","))
    result = {"checkpoint": str(args.checkpoint), "group_size": args.group_size, "machine": cpu_name(),
              "threads": torch.get_num_threads(), "torch": torch.__version__,
              "weight_MiB": {n: round(weight_bytes(m) / 2**20, 1) for n, m in models.items()}}
    if args.perplexity:
        result["perplexity"] = perplexities(models, tok, args.max_tokens, args.eval_context)
    if args.speed:
        result["decode"] = decode_speed(models, tok, args.prompt_tokens, args.new_tokens, args.repeats)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
