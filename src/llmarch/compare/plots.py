"""The comparison's figures (PNG): validation loss against training compute, decode time and state against
context, and synthetic-task accuracy."""
from __future__ import annotations

from pathlib import Path

from ..analysis.plots import _pyplot
from ..bench.attention import two_panels

MIB = 2**20


def loss_vs_compute(results: dict[str, dict], png: Path) -> None:
    """Each entry's validation curve against FLOPs spent; next-token losses left, other objectives right."""
    def draw(ax_c, ax_o):
        for r in results.values():
            if not r.get("curve"):
                continue
            ax = ax_c if r["objective"] == "clm" else ax_o
            ax.plot([p["flops"] for p in r["curve"]], [p["val_loss"] for p in r["curve"]], "o-", ms=3,
                    label=r["label"].split(" (")[0])
        ax_c.set(xlabel="training FLOPs", ylabel="validation loss (nats)", title="next-token loss vs compute")
        ax_o.set(xlabel="training FLOPs", ylabel="validation loss (nats)",
                 title="encoder / encoder-decoder objectives")

    two_panels(png, draw)


def decode_vs_context(speed: dict[str, dict], labels: dict[str, str], png: Path) -> None:
    def draw(ax_t, ax_m):
        for key, s in speed.items():
            rows = s.get("decode")
            if not rows:
                continue
            ctx = [r["context"] for r in rows]
            ax_t.loglog(ctx, [1e3 / r["tokens_per_s"] for r in rows], "o-", ms=3, label=labels[key])
            ax_m.loglog(ctx, [max(r["state_bytes"], 1) / MIB for r in rows], "o-", ms=3, label=labels[key])
        ax_t.set(xlabel="tokens already in the sequence", ylabel="ms per decoded token", title="batch-1 decode step")
        ax_m.set(xlabel="tokens already in the sequence", ylabel="decode state (MiB)", title="decode state, batch 1")

    two_panels(png, draw)


def synthetic_accuracy(results: dict[str, dict], png: Path) -> None:
    plt = _pyplot()
    rows = [r for r in results.values() if r.get("recall_accuracy") is not None]
    fig, ax = plt.subplots(figsize=(max(6.4, 0.5 * len(rows) + 2), 4.2))
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r["recall_accuracy"] for r in rows], 0.4, label="associative recall")
    ax.bar([i + 0.2 for i in x], [r["copy_accuracy"] or 0 for r in rows], 0.4, label="selective copying")
    ax.set_xticks(list(x), [r["label"].split(" (")[0] for r in rows], rotation=45, ha="right")
    ax.set(ylabel="answer accuracy", ylim=(0, 1), title="synthetic tasks at equal compute")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
