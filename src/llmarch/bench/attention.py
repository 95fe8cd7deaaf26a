"""`llmarch bench attention`: forward + backward time and peak memory of one layer of each attention kind
against full attention, over sequence lengths, with the log-log slope fitted per kind (time ~ L^slope:
2 for full attention's arithmetic, 1 for the linear-cost kinds) and a log-log plot.

`kinds` also takes the non-attention mixers (mamba, mamba2, hyena: one mixer module as a model builds it, the
config's defaults but width, ssm_head_dim cut to divide the inner width), which are causal only. They are
opt-in: the default list is the attention kinds alone, so the default run and its documented table stay
what they were (docs/benchmarks.md runs the mixers with `--attn-kinds`).

Peak memory on CUDA is torch's allocator peak; on CPU it is the growth of the process's peak resident set
(VmHWM, reset through /proc/self/clear_refs before each measurement) over the resident set before it, which
counts what torch allocates for the step (Linux only; None elsewhere). Every time is the median of `repeats`
timed runs after a warm-up."""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import ModelConfig
from ..device import parse_device
from ..errors import LlmarchError, check_fields
from ..layers.attention_kinds import ATTENTION_KINDS, windowed_kinds
from ..layers.mixer import MIXERS

MIXER_KINDS = tuple(m for m in MIXERS if m != "attention")  # mamba, mamba2, hyena


@dataclass
class AttentionBenchConfig:
    lengths: str = "1024,2048,4096,8192,16384"  # comma-separated sequence lengths
    # comma-separated attention kinds (full runs twice, with the sdpa and eager kernels) or mixers (MIXER_KINDS);
    # all: every attention kind that runs as one layer under this causality (not those that read what a model's
    # stack builds, DeBERTa's relative embeddings or LongT5's global blocks, nor lightning when bidirectional)
    kinds: str = "all"
    d_model: int = 256  # width of the benchmarked layer
    n_heads: int = 4  # its heads
    window: int = 256  # sliding_window's window
    block: int = 64  # attention_block (strided stride, BigBird block)
    causal: bool = True  # causal (decoder) or bidirectional attention
    repeats: int = 3  # timed runs per figure (the median is reported)
    eager_max_length: int = 8192  # the eager full-attention reference stores L x L scores: longer is skipped
    device: str | None = None  # cpu, cuda, cuda:N or mps; None: cuda if available, else cpu


def _rss_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _mmap_large_allocations() -> None:
    """glibc raises its mmap threshold after large frees, after which big tensors come from the heap and
    their pages stay resident when freed, hiding later peaks from VmHWM; a fixed threshold keeps every large
    allocation its own mapping, returned on free."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 16)  # M_MMAP_THRESHOLD = 64 KiB (also switches the dynamic threshold off)
        libc.mallopt(-1, 1 << 16)  # M_TRIM_THRESHOLD: return freed heap tops too
    except (OSError, AttributeError):
        pass


def _measure(step, repeats: int, device: torch.device) -> tuple[float, float | None]:
    """(median seconds of step(), peak bytes one step adds)."""
    step()  # warm-up (and allocator growth)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step()
        return statistics.median(times), torch.cuda.max_memory_allocated(device) - base
    base = _rss_kib("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # peak := current
    except OSError:
        return statistics.median(times), None
    step()
    peak = _rss_kib("VmHWM")
    return statistics.median(times), None if base is None or peak is None else max(peak - base, 0) * 1024


def slope(lengths: list[int], values: list[float]) -> float | None:
    """Least-squares slope of log(value) on log(length)."""
    pts = [(math.log(n), math.log(v)) for n, v in zip(lengths, values) if v and v > 0]
    if len(pts) < 2:
        return None
    mx, my = sum(x for x, _ in pts) / len(pts), sum(y for _, y in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def parse_lengths(text: str, flag: str) -> list[int]:
    """Comma-separated positive integers (`--attn-lengths 1024,2048`), or a one-line error naming the flag."""
    try:
        lengths = [int(n) for n in text.split(",")]
    except ValueError:
        lengths = []
    if not lengths or min(lengths) < 1:
        raise LlmarchError(f"{flag} must be positive integers separated by commas, got {text!r}")
    return lengths


def check_kinds(kinds: list[str], causal: bool) -> None:
    unknown = sorted(set(kinds) - set(ATTENTION_KINDS) - set(MIXER_KINDS))
    if unknown:
        raise LlmarchError(f"unknown attention kind {unknown[0]!r}; choose from: {', '.join(ATTENTION_KINDS)}; "
                           f"or a mixer: {', '.join(MIXER_KINDS)}")
    mixers = [k for k in kinds if k in MIXER_KINDS]
    if mixers and not causal:
        raise LlmarchError(f"mixer {mixers[0]!r} is causal only; drop it or keep causal=True")


def standalone_kinds(bc: AttentionBenchConfig) -> list[str]:
    """The attention kinds whose layer this bench builds alone under bc's causality (the rest refuse it)."""
    out = []
    for kind in ATTENTION_KINDS:
        try:
            _layer(bc, kind, "sdpa", 16)
        except LlmarchError:
            continue
        out.append(kind)
    return out


def _layer(bc: AttentionBenchConfig, kind: str, impl: str, context: int) -> torch.nn.Module:
    """One attention layer, or one mixer initialised as a model initialises it (its init_ssm)."""
    from ..layers.attention import Attention

    if kind in MIXER_KINDS:
        inner = ModelConfig.ssm_expand * bc.d_model  # Mamba-2's heads must divide its inner width
        cfg = ModelConfig(d_model=bc.d_model, n_heads=bc.n_heads, n_layers=1, context_length=context, mixer=kind,
                          ssm_head_dim=math.gcd(ModelConfig.ssm_head_dim, inner), bias=False)
        layer = MIXERS[kind](cfg)
        layer.init_ssm()
        return layer
    cfg = ModelConfig(d_model=bc.d_model, n_heads=bc.n_heads, n_layers=1, context_length=context,
                      attention=kind, attn_impl=impl, causal=bc.causal, attention_block=bc.block,
                      sliding_window=bc.window if kind in windowed_kinds() else None, bias=False)
    return Attention(cfg)


def run_attention_bench(bc: AttentionBenchConfig) -> dict:
    from ..layers.attention import AttentionContext

    check_fields(bc, positive=("d_model", "n_heads", "window", "block", "repeats", "eager_max_length"))
    lengths = parse_lengths(bc.lengths, "--attn-lengths")
    device = parse_device(bc.device)
    if device.type == "cpu":
        _mmap_large_allocations()
    kinds = standalone_kinds(bc) if bc.kinds.strip() == "all" else [k.strip() for k in bc.kinds.split(",")]
    check_kinds(kinds, bc.causal)
    for kind in kinds:  # a kind this bench cannot run alone: one line naming it, before any timing
        if kind not in MIXER_KINDS:
            _layer(bc, kind, "sdpa", max(lengths))
    variants = [(k, "sdpa") for k in kinds] + ([("full", "eager")] if "full" in kinds else [])
    out = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "d_model": bc.d_model, "heads": bc.n_heads, "causal": bc.causal, "lengths": lengths, "kinds": {}}
    for kind, impl in variants:
        name = kind if impl == "sdpa" else f"{kind} (eager)"
        rows = []
        for L in lengths:
            if impl == "eager" and L > bc.eager_max_length:
                continue
            torch.manual_seed(0)
            layer = _layer(bc, kind, impl, max(lengths)).to(device)
            x = torch.randn(1, L, bc.d_model, device=device, requires_grad=True)
            ctx = None if kind in MIXER_KINDS else AttentionContext(
                mask=None, causal=bc.causal, rope=None, input_pos=torch.arange(L, device=device))

            def step():
                layer(x, ctx).sum().backward()

            t, mem = _measure(step, bc.repeats, device)
            rows.append({"length": L, "seconds": t, "peak_bytes": mem})
        done = [r["length"] for r in rows]
        out["kinds"][name] = {"rows": rows, "time_slope": slope(done, [r["seconds"] for r in rows]),
                              "memory_slope": slope(done, [r["peak_bytes"] for r in rows])}
    return out


def two_panels(png: Path, draw) -> None:
    """Two log-log panels side by side, drawn by draw(ax_left, ax_right), with legends and grids, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    draw(*axes)
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:  # an empty panel gets no legend (and no warning about one)
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def plot(result: dict, png: Path) -> None:
    def draw(ax_t, ax_m):
        for name, data in result["kinds"].items():
            lengths = [r["length"] for r in data["rows"]]
            ax_t.loglog(lengths, [r["seconds"] for r in data["rows"]], "o-",
                        label=f"{name} ({data['time_slope'] or 0:.2f})")
            mem = [r["peak_bytes"] for r in data["rows"]]
            if all(m for m in mem):
                ax_m.loglog(lengths, [m / 2**20 for m in mem], "o-",
                            label=f"{name} ({data['memory_slope'] or 0:.2f})")
        ax_t.set(xlabel="sequence length", ylabel="forward + backward (s)", title="time (fitted slope)")
        ax_m.set(xlabel="sequence length", ylabel="peak memory (MiB)", title="memory (fitted slope)")

    two_panels(png, draw)


def to_markdown(result: dict) -> str:
    lengths = result["lengths"]
    lines = [f"one layer (attention or mixer), d_model {result['d_model']}, {result['heads']} heads, batch 1, "
             f"causal={result['causal']}, {result['device']}, torch {result['torch']}, {result['threads']} threads",
             "", "| kind | " + " | ".join(f"{n} (ms, MiB)" for n in lengths) + " | time slope | memory slope |",
             "|---|" + "---|" * (len(lengths) + 2)]
    for name, data in result["kinds"].items():
        by_length = {r["length"]: r for r in data["rows"]}
        cells = ["skipped" if n not in by_length else f"{by_length[n]['seconds'] * 1e3:.1f}, " + (
            "n/a" if by_length[n]["peak_bytes"] is None else f"{by_length[n]['peak_bytes'] / 2**20:.0f}")
            for n in lengths]
        ts, ms = data["time_slope"], data["memory_slope"]
        lines.append(f"| {name} | " + " | ".join(cells) + " | " + " | ".join(
            "n/a" if v is None else f"{v:.2f}" for v in (ts, ms)) + " |")
    return "\n".join(lines)
