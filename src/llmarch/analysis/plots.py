"""PNG figures of what analysis/hooks.py computes: attention maps per head, a logit-lens heatmap, an
activation-patching heatmap; and `analyze`, which writes them for one prompt (`llmarch analyze`)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from ..errors import LlmarchError, warn
from .hooks import logit_lens, patch_residual, run_with_cache


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def attention_maps(pattern: torch.Tensor, tokens: list[str], png: Path, title: str = "",
                   keys: list[str] | None = None) -> None:
    """pattern (heads, query, key) of one sequence: a grid of per-head heatmaps (keys: the key tokens where
    they are not the queries', as in cross-attention)."""
    keys = tokens if keys is None else keys
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
        if max(len(tokens), len(keys)) <= 24:
            ax.set_xticks(range(len(keys)), keys, rotation=90, fontsize=6)
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


def analyze(model, tok, prompt: str, out: Path, corrupted: str | None = None, target_tokens: int = 8,
            progress=None) -> dict:
    """Attention maps of every attention layer, the logit lens (each layer's probability of the model's final
    prediction at each position, with each layer's top token), and with a corrupted prompt of the same length
    in tokens, residual-stream patching towards the clean prediction at the last position (contrasted with
    the corrupted prompt's top token, or where that is the same, the token whose logit difference from the
    prediction the corruption moves most). Decoder-only
    models predict the next token; an encoder (BERT) its MLM reconstruction of each position; an
    encoder-decoder reads the prompt as its source, and the lens and the prediction are over the decoder's
    greedy output (up to target_tokens), patching over the encoder. Writes PNGs and summary.json under
    `out`; returns the summary. progress: a progress.Bar, whose total this sets to the steps (a figure, a
    patched run) and advances after each."""
    cfg = model.config
    if cfg.head != "lm":
        raise LlmarchError("llmarch analyze reads language models (head lm), not classifiers")
    ids = tok.encode(prompt)
    if not ids:
        raise LlmarchError("the prompt encodes to no tokens")
    bad = tok.encode(corrupted) if corrupted is not None else ids
    if len(bad) != len(ids):  # before any work
        raise LlmarchError(f"the corrupted prompt has {len(bad)} tokens, the prompt {len(ids)}: patching "
                           "needs the same length")
    if len(ids) > cfg.context_length:
        warn(f"the prompt has {len(ids)} tokens, more than the model's context_length {cfg.context_length}: "
             f"analysing its last {cfg.context_length}")
    x = torch.tensor([ids[-cfg.context_length:]])
    tokens = [_label(tok.token_text(i)) for i in x[0].tolist()]
    kwargs, out_tokens = {}, tokens
    if cfg.is_encoder_decoder:
        kwargs["decoder_input_ids"] = _greedy_target(model, x, target_tokens)
        out_tokens = [_label(tok.token_text(i)) for i in kwargs["decoder_input_ids"][0].tolist()]
    out.mkdir(parents=True, exist_ok=True)
    names = _pattern_names(model)
    step = progress.advance if progress is not None else None
    if progress is not None:  # a figure per attention layer and the lens; layers x positions patched runs
        progress.total = len(names) + 1 + (_stack_blocks(model) * x.shape[1] if corrupted is not None else 0)
    logits, cache = run_with_cache(model, x, names, **kwargs)
    files = []
    for name in names:
        queries = out_tokens if name.startswith("decoder.") else tokens
        keys = tokens if ".cross_attn." in name else queries
        png = out / f"attention-{_short(name)}.png"
        attention_maps(cache[name][0], queries, png, name, keys)
        files.append(png.name)
        if step:
            step(1)
    lens = logit_lens(model, x, **kwargs)[:, 0].float().softmax(-1)  # (layers, T, V)
    predicted = logits[0].argmax(-1)  # the model's prediction at each position
    prob = lens.gather(-1, predicted.expand(lens.shape[0], -1)[..., None])[..., 0]  # (layers, T)
    top = [[_label(tok.token_text(int(i))) for i in row] for row in lens.argmax(-1)]
    heatmap(prob, out_tokens, out / "logit-lens.png", "logit lens: P(final prediction) by layer", "layer", top)
    files.append("logit-lens.png")
    if step:
        step(1)
    summary = {"tokens": tokens, "prediction": tok.decode([int(predicted[-1])]), "files": files}
    if cfg.is_encoder_decoder:
        summary["output"] = tok.decode(kwargs["decoder_input_ids"][0, 1:].tolist() + [int(predicted[-1])])
    elif cfg.causal:
        summary["next_token"] = summary["prediction"]
    if corrupted is not None:
        bad = torch.tensor([bad[-cfg.context_length:]])
        right = int(predicted[-1])
        with torch.no_grad():
            bad_logits = model(bad, **kwargs).logits[0, -1]
        wrong = int(bad_logits.argmax())
        if wrong == right:  # the same top token: contrast with the token whose log-odds against it the
            # corruption moves most (the largest |clean - corrupted| logit difference)
            shift = bad_logits.log_softmax(-1) - logits[0, -1].log_softmax(-1)
            move = (shift - shift[right]).abs()
            move[right] = 0
            wrong = int(move.argmax())
            if move[wrong] < 1e-6:
                raise LlmarchError("the corrupted prompt gives the prompt's logits; patching has nothing to restore")
        summary["contrast"] = [tok.decode([right]), tok.decode([wrong])]
        heat = patch_residual(model, x, bad, right, wrong, progress=step, **kwargs)
        where = "the encoder's resid_pre" if cfg.is_encoder_decoder else "resid_pre"
        heatmap(heat, tokens, out / "patching.png", f"patched {where}: share of the logit difference restored",
                "layer")
        files.append("patching.png")
        summary["patching"] = heat.tolist()
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _label(text: str) -> str:
    """A token as a plot label: control characters escaped (fonts have no glyph for them)."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _greedy_target(model, source: torch.Tensor, n: int) -> torch.Tensor:
    """The decoder input [start, y1, ..., y_{k-1}] of the greedy output y1..yk (k <= n, ending at eos), so
    that position t predicts y_{t+1}."""
    from ..generate import generate

    out = generate(model, [source[0].tolist()], n)[0]  # as lists: the ids up to and including eos
    return torch.tensor([[model.config.decoder_start_id, *out[:-1]]])


def _pattern_names(model) -> list[str]:
    from ..models.build import stacks

    names = []
    for name, (stack, _) in stacks(model).items():
        prefix = f"{name}." if name else ""
        for i, block in enumerate(stack.blocks):
            if hasattr(block.seq_mixer, "hook_pattern"):
                names.append(f"{prefix}blocks.{i}.attn.hook_pattern")
            if getattr(block, "cross_attn", None) is not None:
                names.append(f"{prefix}blocks.{i}.cross_attn.hook_pattern")
    return names


def _stack_blocks(model) -> int:
    """Blocks of the stack that patching patches (an encoder-decoder: the encoder)."""
    return len(model.encoder.blocks if model.config.is_encoder_decoder else model.blocks)


def _short(name: str) -> str:
    """blocks.3.attn.hook_pattern -> 3; decoder.blocks.1.cross_attn.hook_pattern -> decoder-1-cross."""
    parts = name.replace("blocks.", "").split(".")
    return "-".join(parts[:-2] + (["cross"] if parts[-2] == "cross_attn" else []))
