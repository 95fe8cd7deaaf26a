"""Peak resident memory of `llmarch.from_hf` on a randomly initialised ~1.1B-parameter LLaMA-shaped
checkpoint (width 2048, 22 layers, 32 heads, 4 KV heads, FFN 5632, vocab 32000), against the bytes of its
weights. Each load runs in a fresh process; the peak is VmHWM after resetting it (/proc/self/clear_refs),
less the resident set before loading.

    .venv/bin/python benchmarks/load_memory.py --dir /tmp/llama-1b --dtype bfloat16
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from finetune_memory import rss_kib  # benchmarks/ is on the path of a script run from it

SHAPE = dict(vocab_size=32000, d_model=2048, n_layers=22, n_heads=32, n_kv_heads=4, ffn_hidden=5632,
             context_length=2048)


def make(directory: Path, dtype: str) -> None:
    import torch

    import llmarch

    torch.manual_seed(0)
    model = llmarch.build("llama-tiny", name="llama-1.1b", **SHAPE).to(getattr(torch, dtype))
    llmarch.to_hf(model, directory)


def measure(directory: Path, loader: str) -> dict:
    import torch

    import llmarch

    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    before = rss_kib("VmRSS")
    if loader == "llmarch":
        model = llmarch.from_hf(directory)
    else:
        import transformers

        model = transformers.AutoModelForCausalLM.from_pretrained(directory, dtype="auto")
    peak = rss_kib("VmHWM")
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    params = sum(p.numel() for p in model.parameters())
    del torch
    return {"loader": loader, "parameters": params, "weight_bytes": weights,
            "peak_extra_bytes": (peak - before) * 1024, "ratio": (peak - before) * 1024 / weights}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", required=True, help="where the random checkpoint is (made if absent)")
    ap.add_argument("--dtype", default="bfloat16", help="stored dtype of the checkpoint")
    ap.add_argument("--with-transformers", action="store_true", help="also measure transformers' from_pretrained")
    ap.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # the child process's job
    args = ap.parse_args()
    directory = Path(args.dir)
    if args.measure:
        print(json.dumps(measure(directory, args.measure)))
        return
    if not (directory / "config.json").is_file():
        make(directory, args.dtype)
    results = []
    for loader in ["llmarch"] + (["transformers"] if args.with_transformers else []):
        out = subprocess.run([sys.executable, __file__, "--dir", str(directory), "--measure", loader],
                             capture_output=True, text=True, check=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    for r in results:
        print(f"{r['loader']}: {r['parameters']:,} parameters, weights {r['weight_bytes'] / 2**30:.2f} GiB, "
              f"peak extra resident {r['peak_extra_bytes'] / 2**30:.2f} GiB = {r['ratio']:.2f}x the weights")


if __name__ == "__main__":
    main()
