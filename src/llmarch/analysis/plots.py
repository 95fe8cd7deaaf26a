"""PNG figures of what analysis/hooks.py computes: attention maps per head, a logit-lens heatmap, an
activation-patching heatmap; and `analyze`, which writes them for one prompt (`llmarch analyze`)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from ..errors import LlmarchError
from .hooks import logit_lens, patch_residual, run_with_cache


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def attention_maps(pattern: torch.Tensor, tokens: list[str], png: Path, title: str = "") -> None:
    """pattern (heads, query, key) of one sequence: a grid of per-head heatmaps."""
    plt = _pyplot()
    H = pattern.shape[0]
    cols = min(H, 4)
    rows = math.ceil(H / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    for h, ax in enumerate(axes.flat):
        if h >= H:
            ax.axis("off")
            continue
        ax.imshow(pattern[h].float().numpy(), cmap="viridis", vmin=0, vmax=1)
        ax.set_title(f"head {h}", fontsize=8)
        if len(tokens) <= 24:
            ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=6)
            ax.set_yticks(range(len(tokens)), tokens, fontsize=6)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def heatmap(values: torch.Tensor, tokens: list[str], png: Path, title: str, ylabel: str,
            cell_text: list[list[str]] | None = None) -> None:
    """values (rows, positions) as a heatmap with the prompt's tokens along x."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(tokens)), max(3, 0.4 * values.shape[0])))
    im = ax.imshow(values.float().numpy(), aspect="auto", cmap="RdBu_r" if values.min() < 0 else "viridis")
    ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=7)
    ax.set(ylabel=ylabel, title=title)
    if cell_text is not None:
        for i, row in enumerate(cell_text):
            for t, text in enumerate(row):
                ax.text(t, i, text, ha="center", va="center", fontsize=5, color="white")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def analyze(model, tok, prompt: str, out: Path, corrupted: str | None = None) -> dict:
    """For a decoder-only LM: attention maps of every attention layer, the logit lens (each layer's
    probability of the token the model predicts next at each position, with each layer's top token), and with
    a corrupted prompt of the same length in tokens, residual-stream patching towards the clean prediction.
    Writes PNGs and summary.json under `out`; returns the summary."""
    ids = tok.encode(prompt)
    if not ids:
        raise LlmarchError("the prompt encodes to no tokens")
    x = torch.tensor([ids[-model.config.context_length:]])
    tokens = [tok.token_text(i) for i in x[0].tolist()]
    out.mkdir(parents=True, exist_ok=True)
    names = _pattern_names(model)
    logits, cache = run_with_cache(model, x, names)
    files = []
    for name in names:
        png = out / f"attention-{name.split('.')[1]}.png"
        attention_maps(cache[name][0], tokens, png, name)
        files.append(png.name)
    lens = logit_lens(model, x)[:, 0].float().softmax(-1)  # (layers, T, V)
    predicted = logits[0].argmax(-1)  # the model's next token at each position
    prob = lens.gather(-1, predicted.expand(lens.shape[0], -1)[..., None])[..., 0]  # (layers, T)
    top = [[tok.token_text(int(i)) for i in row] for row in lens.argmax(-1)]
    heatmap(prob, tokens, out / "logit-lens.png", "logit lens: P(final prediction) by layer", "layer", top)
    files.append("logit-lens.png")
    summary = {"tokens": tokens, "next_token": tok.decode([int(predicted[-1])]), "files": files}
    if corrupted is not None:
        bad = tok.encode(corrupted)
        if len(bad) != len(ids):
            raise LlmarchError(f"the corrupted prompt has {len(bad)} tokens, the prompt {len(ids)}: patching "
                               "needs the same length")
        right = int(predicted[-1])
        with torch.no_grad():
            wrong = int(model(torch.tensor([bad])).logits[0, -1].argmax())
        if wrong == right:
            raise LlmarchError("the corrupted prompt predicts the same next token; patching has nothing to restore")
        heat = patch_residual(model, x, torch.tensor([bad]), right, wrong)
        heatmap(heat, tokens, out / "patching.png", "patched resid_pre: share of the logit difference restored",
                "layer")
        files.append("patching.png")
        summary["patching"] = heat.tolist()
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _pattern_names(model) -> list[str]:
    return [f"blocks.{i}.attn.hook_pattern" for i, b in enumerate(model.blocks) if b.mixer_kind == "attention"]
