"""`llmarch bench decode-context`: seconds per decoded token when the sequence already holds L tokens, for
small models of one width and depth, one per sequence mixer, at each L in a list. A recurrent mixer's step
(Mamba, Mamba-2) should cost the same at every L; attention over a KV cache and Hyena's convolution over the
history grow with it. Reported per kind: tokens/s at each L, the generation state's bytes, and the ratio of
the longest context's per-token time to the shortest's.

Each kind is its family's tiny preset (attention kinds: llama-tiny with that attention and MHA heads; mamba,
mamba2, hyena: their own tiny presets, so their blocks are those papers' blocks) at the same width and depth,
random weights, eval mode, fp32, batch 1. Reaching L tokens: where every layer's cache is a KV cache, its
first L slots are filled with random keys and values (the step reads them the same whatever they hold, and
a 16k-token prefill through full attention would take longer than the measurement); any other state is
reached by a real prefill of L random tokens in chunks. Then `new_tokens` + 1 single-token forward calls
(`model(tok, input_pos=[pos], kv_len=pos + 1)`, the eager decode step of every model; the first is a
warm-up), and the median of their times; per context, the median of that over `rounds` passes."""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import ModelConfig
from ..device import parse_device
from ..layers.attention_kinds import ATTENTION_KINDS, windowed_kinds
from ..presets import resolve
from ..errors import check_fields
from .attention import check_kinds, parse_lengths, two_panels

FAMILY = {"mamba": "mamba-tiny", "mamba2": "mamba2-tiny", "hyena": "hyena-tiny",
          "gated_deltanet": "gated-deltanet-tiny"}  # attention kinds: llama-tiny


@dataclass
class ContextBenchConfig:
    lengths: str = "1024,4096,16384"  # comma-separated context lengths: tokens in the sequence before timing
    kinds: str = "full,sliding_window,mamba,mamba2,hyena"  # attention kinds or mixers
    d_model: int = 256  # width of the benchmarked model
    n_layers: int = 4  # its blocks
    n_heads: int = 4  # attention kinds (MHA)
    window: int = 256  # sliding_window's window
    new_tokens: int = 64  # timed one-token steps per context (their median: a step is a few ms, noisy)
    rounds: int = 3  # passes over the contexts; a context's figure is the median of its passes' medians
    chunk: int = 1024  # prefill chunk, where a prefill is needed
    device: str | None = None  # cpu, cuda, cuda:N or mps; None: cuda if available, else cpu


def model_config(cc: ContextBenchConfig, kind: str, context: int) -> ModelConfig:
    family = FAMILY.get(kind, "llama-tiny")
    base = resolve(family)
    overrides = dict(d_model=cc.d_model, n_layers=cc.n_layers, context_length=context,
                     ssm_head_dim=math.gcd(base.ssm_head_dim, base.ssm_expand * cc.d_model))
    if kind in ATTENTION_KINDS:
        overrides.update(attention=kind, n_heads=cc.n_heads, n_kv_heads=cc.n_heads,
                         sliding_window=cc.window if kind in windowed_kinds() else None)
    return resolve(family, **overrides)


def _fill(model, L: int, chunk: int) -> str:
    from ..layers.kv_cache import KVCache

    caches = model.caches()
    if all(isinstance(c, KVCache) for c in caches):
        for c in caches:
            c.k[:, :, :L].normal_()
            c.v[:, :, :L].normal_()
        return "random keys and values"
    device = next(model.parameters()).device
    for start in range(0, L, chunk):
        n = min(chunk, L - start)
        ids = torch.randint(model.config.vocab_size, (1, n), device=device)
        model(ids, input_pos=torch.arange(start, start + n, device=device), kv_len=start + n, last_only=True)
    return "prefill"


def _seconds_per_token(model, L: int, n: int, device: torch.device) -> float:
    tok = torch.randint(model.config.vocab_size, (1, 1), device=device)
    times = []
    for pos in range(L, L + n + 1):
        slot = torch.tensor([pos], device=device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        model(tok, input_pos=slot, kv_len=pos + 1)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])  # the first step is a warm-up


def at_context(model, L: int, cc: ContextBenchConfig, device: torch.device) -> tuple[float, int, str]:
    """(median seconds per token, state bytes, how the state was filled) with L tokens in the sequence."""
    model.setup_cache(1, L + cc.new_tokens + 1)
    fill = _fill(model, L, cc.chunk)
    seconds = _seconds_per_token(model, L, cc.new_tokens, device)
    nbytes = sum(c.nbytes for c in model.caches())
    model.clear_cache()
    return seconds, nbytes, fill


@torch.inference_mode()
def run_context_bench(cc: ContextBenchConfig) -> dict:
    from ..models.transformer import TransformerLM

    check_fields(cc, positive=("d_model", "n_layers", "n_heads", "window", "new_tokens", "rounds", "chunk"))
    lengths = parse_lengths(cc.lengths, "--ctx-lengths")
    device = parse_device(cc.device)
    kinds = [k.strip() for k in cc.kinds.split(",")]
    check_kinds(kinds, causal=True)
    out = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "d_model": cc.d_model, "n_layers": cc.n_layers, "window": cc.window, "new_tokens": cc.new_tokens,
           "rounds": cc.rounds, "lengths": lengths, "kinds": {}}
    for kind in kinds:
        cfg = model_config(cc, kind, max(lengths) + cc.new_tokens + 1)
        torch.manual_seed(0)
        model = TransformerLM(cfg).to(device).eval()
        # rounds over the contexts in turn, so a slow spell of a shared machine spreads over all of them
        runs = [[at_context(model, L, cc, device) for L in lengths] for _ in range(cc.rounds)]
        rows = []
        for i, L in enumerate(lengths):
            s = statistics.median(run[i][0] for run in runs)
            rows.append({"context": L, "seconds_per_token": s, "tokens_per_s": 1 / s, "state_bytes": runs[0][i][1],
                         "rounds_seconds": [run[i][0] for run in runs]})
        out["kinds"][kind] = {"preset": FAMILY.get(kind, "llama-tiny"), "fill": runs[0][0][2],
                              "parameters": sum(p.numel() for p in model.parameters()), "rows": rows,
                              "growth": rows[-1]["seconds_per_token"] / rows[0]["seconds_per_token"]}
    return out


def plot(result: dict, png: Path) -> None:
    def draw(ax_t, ax_m):
        for kind, data in result["kinds"].items():
            ctx = [r["context"] for r in data["rows"]]
            ax_t.loglog(ctx, [r["seconds_per_token"] * 1e3 for r in data["rows"]], "o-",
                        label=f"{kind} (x{data['growth']:.2f})")
            ax_m.loglog(ctx, [r["state_bytes"] / 2**20 for r in data["rows"]], "o-", label=kind)
        ax_t.set(xlabel="tokens already in the sequence", ylabel="ms per decoded token",
                 title="decode step (longest / shortest context)")
        ax_m.set(xlabel="tokens already in the sequence", ylabel="generation state (MiB)",
                 title="KV cache or recurrent state, batch 1")

    two_panels(png, draw)


def to_markdown(result: dict) -> str:
    lengths = result["lengths"]
    lines = [f"{result['n_layers']} layers, d_model {result['d_model']}, batch 1, fp32, {result['device']}, "
             f"torch {result['torch']}, {result['threads']} threads; per context the median over {result['rounds']} "
             f"rounds of the median of {result['new_tokens']} one-token steps",
             "", "| kind | " + " | ".join(f"{n} (tokens/s, state MiB)" for n in lengths)
             + f" | time per token {lengths[-1]} / {lengths[0]} |", "|---|" + "---|" * (len(lengths) + 1)]
    for kind, data in result["kinds"].items():
        cells = [f"{r['tokens_per_s']:.0f}, {r['state_bytes'] / 2**20:.3g}" for r in data["rows"]]
        lines.append(f"| {kind} | " + " | ".join(cells) + f" | {data['growth']:.2f} |")
    return "\n".join(lines)
