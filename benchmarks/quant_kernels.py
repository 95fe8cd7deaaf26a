"""One layer's product through each weight-only path llmarch could take, on the device at hand: the evidence for
quant/linear.py's choices where they are made by device (issue 23). Each (rows, N, K) shape is timed for
- bf16: F.linear on the bf16 weight (the baseline);
- int8 cast: F.linear on the int8 codes cast to bf16, then the scales (Int8Linear's path on CUDA and for many rows);
- int8 cast compiled: the same under torch.compile (inductor may fuse the cast into the product);
- int8 kernel: aten._weight_int8pack_mm (Int8Linear's path on CPU below INT8_ROWS);
- int4: the Int4Linear layer itself (G 128): tinygemm on CUDA, the CPU kernel on a CPU;
- on CUDA also each of the layer's two paths at every shape, tinygemm and "read, GEMM" (the weights read through
  tinygemm as rows of the identity, then one bf16 GEMM), to place the rows' break-even that the layer guesses.
Contenders in turns (llmarch.bench.model.round_times), medians of --repeats rounds of --calls calls each; the
ratios are medians of per-round ratios against bf16. Shapes default to the 1.1B LLaMA's (d 2048, FFN 5632).

    python benchmarks/quant_kernels.py --device cuda --out quant-kernels.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from llmarch.bench.model import round_times  # noqa: E402
from llmarch.quant.linear import Int4Linear, Int8Linear, _cuda_mm  # noqa: E402


def contenders(rows: int, n: int, k: int, device: torch.device) -> tuple[dict, str | None]:
    torch.manual_seed(0)
    w = torch.randn(n, k, device=device) / k ** 0.5
    x = torch.randn(rows, k, device=device, dtype=torch.bfloat16)
    wb = w.bfloat16()
    int8 = Int8Linear.from_weight(w, None, torch.bfloat16)
    codes, scales = int8.weight, int8.scales
    int4 = Int4Linear.from_weight(w, None, 128, torch.bfloat16)

    def cast(x):
        return F.linear(x, codes.to(x.dtype)) * scales

    fns = {"bf16": lambda: F.linear(x, wb), "int8 cast": lambda: cast(x)}
    fns["int8 cast compiled"] = (lambda f: lambda: f(x))(torch.compile(cast, dynamic=False))
    try:
        torch._weight_int8pack_mm(x, codes, scales)
        fns["int8 kernel"] = lambda: torch._weight_int8pack_mm(x, codes, scales)
    except (RuntimeError, NotImplementedError) as e:  # a device or build without it: say so
        print(f"int8 kernel at ({rows}, {n}, {k}): {str(e).splitlines()[0]}")
    fns["int4"] = lambda: int4(x)
    if int4.tiles == "cuda":  # the layer's two CUDA paths at every shape: where the rows' break-even lies
        sz = int4.scale_zeros
        fns["int4 tinygemm"] = lambda: _cuda_mm(x, int4.packed, 128, sz)
        fns["int4 read, GEMM"] = lambda: F.linear(x, int4._rows_of_eye(0, k, sz))
    return fns, int4.tiles


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--shapes", default="1x2048x2048,1x5632x2048,1x2048x5632,8x5632x2048,64x5632x2048,512x5632x2048,"
                   "4096x5632x2048",
                   help="rows x N x K, comma-separated (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--calls", type=int, default=50, help="products per timed call (default: %(default)s)")
    p.add_argument("--out")
    args = p.parse_args()
    device = torch.device(args.device)
    results = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "torch": torch.__version__, "shapes": []}
    print(f"{results['device']}, torch {torch.__version__}; ms per product, medians; x: against bf16")
    for shape in args.shapes.split(","):
        rows, n, k = map(int, shape.split("x"))
        fns, tiles = contenders(rows, n, k, device)
        repeated = {name: (lambda f: lambda: [f() for _ in range(args.calls)])(f) for name, f in fns.items()}
        times = round_times(repeated, args.repeats, device, warmup=2)
        ms = {name: statistics.median(t) / args.calls * 1e3 for name, t in times.items()}
        ratio = {name: statistics.median(b / t for b, t in zip(times["bf16"], times[name])) for name in times}
        results["shapes"].append({"rows": rows, "n": n, "k": k, "int4_tiles": tiles, "ms": ms,
                                  "speedup_vs_bf16": ratio})
        cells = ", ".join(f"{name} {ms[name]:.4f} ({ratio[name]:.2f}x)" for name in ms)
        print(f"({rows}, {n}, {k}), int4 tiles {tiles}: {cells}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
