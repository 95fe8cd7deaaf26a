"""Peak training memory of full fine-tuning, LoRA and QLoRA of the same model, as a markdown table.

The model: a LLaMA-shaped model of 33.6M parameters (width 512, 8 layers, 8 heads, 4 KV heads, FFN 1536,
vocabulary 8192, untied head), random weights, saved once in full precision (fp32) and once quantized to int4
in groups of 64 (`llmarch quantize`'s format); each run loads its base in a fresh process (QLoRA's the int4
checkpoint, so no full-precision weight ever exists in that process) and trains next-token prediction on one
row of 256 random tokens with AdamW: full fine-tuning every weight; LoRA and QLoRA rank 8 on every linear layer
of the blocks (qkv_proj, o_proj, gate_up, down), QLoRA's base being int4 (its head too; the embedding table stays
fp32, as QLoRA keeps it).

What is measured, on CPU, where torch has no allocator statistics:
- live tensor bytes (llmarch.analysis.memory.peak_bytes): a TorchDispatchMode sees every tensor each operator
  returns (forward, backward, optimizer) and counts the bytes of its storage until that storage is freed; the
  model's own tensors are counted from the start. Its peak over the steps is the table's figure. Not counted: memory an operator allocates for
  itself and frees before it returns (a kernel's scratch space), and everything that is not a tensor.
- the process's peak resident set (VmHWM, reset after loading) less the resident set of the interpreter with
  torch and llmarch imported: a cross-check that includes allocator slack and the libraries' own buffers.
- seconds per step: the fastest of further steps run without the dispatch mode (on a machine shared with other
  jobs, the fastest step is the one least slowed by them), then the median of that over the repeats.

    .venv/bin/python benchmarks/finetune_memory.py --repeats 3
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPE = dict(vocab_size=8192, d_model=512, n_layers=8, n_heads=8, n_kv_heads=4, ffn_hidden=1536, context_length=256)
TARGETS = ("qkv_proj", "o_proj", "gate_up", "down")
METHODS = ("full", "lora", "qlora")


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def make(directory: Path, group_size: int) -> None:
    import torch

    import llmarch
    from llmarch.checkpoint import save_model
    from llmarch.quant import quantize

    torch.manual_seed(0)
    model = llmarch.build("llama-tiny", **SHAPE)
    save_model(model, directory / "float")
    save_model(quantize(model, "int4", group_size=group_size), directory / "int4")


def measure(directory: Path, method: str, steps: int, timed: int, tokens: int) -> dict:
    import torch
    import torch.nn.functional as F

    import llmarch
    from llmarch.adapters import LoRAConfig, apply_lora
    from llmarch.analysis.memory import peak_bytes

    torch.manual_seed(0)
    base_rss = rss_kib("VmRSS")
    model = llmarch.load(directory / ("int4" if method == "qlora" else "float")).train()
    if method != "full":
        apply_lora(model, LoRAConfig(rank=8, alpha=16, targets=TARGETS))
    weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    trained = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trained, lr=1e-4)
    x = torch.randint(0, SHAPE["vocab_size"], (1, tokens + 1))

    def step() -> None:
        logits = model(x[:, :-1]).logits
        F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    Path("/proc/self/clear_refs").write_text("5")  # the peak resident set from here on
    loaded_rss = rss_kib("VmRSS")
    peak = peak_bytes(lambda: [step() for _ in range(steps)], [*model.parameters(), *model.buffers(), x])
    times = []
    for _ in range(timed):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"method": method, "trained": sum(p.numel() for p in trained), "weight_bytes": weights,
            "peak_live_bytes": peak, "peak_rss_bytes": (rss_kib("VmHWM") - base_rss) * 1024,
            "loaded_rss_bytes": (loaded_rss - base_rss) * 1024, "step_s": min(times)}


def table(runs: dict[str, list[dict]]) -> str:
    mib = 2 ** 20
    lines = ["| method | trained parameters | weights in memory | peak live tensors | peak resident set "
             "| time per step |", "|---|---|---|---|---|---|"]
    names = {"full": "full fine-tuning", "lora": "LoRA rank 8", "qlora": "QLoRA rank 8, int4 base (groups of 64)"}
    for method, results in runs.items():
        med = {k: statistics.median(r[k] for r in results) for k in results[0] if k != "method"}
        lines.append(f"| {names[method]} | {int(med['trained']):,} | {med['weight_bytes'] / mib:.1f} MiB "
                     f"| {med['peak_live_bytes'] / mib:.1f} MiB | {med['peak_rss_bytes'] / mib:.0f} MiB "
                     f"| {med['step_s']:.2f} s |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=None, help="where the two checkpoints are (made if absent; default: a temporary "
                                                "directory)")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated, of: full, lora, qlora")
    ap.add_argument("--steps", type=int, default=2, help="measured training steps (default: %(default)s)")
    ap.add_argument("--timed", type=int, default=5, help="further steps, timed (default: %(default)s)")
    ap.add_argument("--tokens", type=int, default=256, help="tokens in the training row (default: %(default)s)")
    ap.add_argument("--group-size", type=int, default=64, help="QLoRA's int4 group size (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=1, help="fresh processes per method; medians reported")
    ap.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # the child process's job
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.dir), args.measure, args.steps, args.timed, args.tokens)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(args.dir or tmp)
        if not (directory / "int4" / "config.json").is_file():
            make(directory, args.group_size)
        runs = {}
        for method in args.methods.split(","):
            runs[method] = []
            for _ in range(args.repeats):
                out = subprocess.run([sys.executable, __file__, "--dir", str(directory), "--measure", method,
                                      "--steps", str(args.steps), "--timed", str(args.timed),
                                      "--tokens", str(args.tokens)], capture_output=True, text=True, check=True)
                runs[method].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(table(runs))


if __name__ == "__main__":
    main()
