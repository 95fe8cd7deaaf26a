"""The comparison's rows, and the guide's table generated from them: what each architecture is said to be best
for (entries.py), and beside it what it measurably did better than the reference row (GPT) in this run, with
the figures; then the figures themselves and statements that follow from them.

A measured advantage is a figure where the row beats the reference by more than noise at this scale: loss by
0.05 nats or by the range of the reference's own losses over seeds (the run trains it at several: early in
training a change of seed moves the loss by a few tenths of a nat), speed or memory by 10%, decode state by 1.5x,
an accuracy by 5 points (on a task the row gets at least half right), parameters per active parameter by 1.5x.
The two largest are shown, largest first (strength: the log of the ratio, or the loss difference in nats, which is the log of the perplexity ratio).
Encoders and encoder-decoders train on their own objectives, so their losses are reported apart and never
ranked against next-token loss."""
from __future__ import annotations

import csv
import io
import math

from .entries import REFERENCE

MIB = 2**20


def data_phrase(data: str | None) -> str:
    """What the models trained on, as the page says it: the embedded corpus, or the --data given."""
    return "the embedded standard-library corpus" if data is None else f"`{data}`"


def flat_row(result: dict, speed: dict, lengths: list[int]) -> dict:
    """One CSV row: the entry's settings, quality and speed figures (blank where it has none)."""
    row = {k: result.get(k) for k in ("key", "label", "objective", "d_model", "n_layers", "parameters",
                                      "active_parameters", "flops_per_token", "steps", "tokens", "train_flops",
                                      "val_loss", "recall_accuracy", "copy_accuracy")}
    row.update({k: speed.get(k) for k in ("train_tokens_per_s", "prefill_tokens_per_s",
                                          "state_bytes_per_context_token", "decode_slowdown",
                                          "decode_ms_per_1k_context")})
    row["train_peak_mib"] = speed["train_peak_bytes"] / MIB if speed.get("train_peak_bytes") else None
    by_len = {r["context"]: r for r in speed.get("decode", [])}
    for L in lengths:
        row[f"decode_tokens_per_s_{L}"] = by_len[L]["tokens_per_s"] if L in by_len else None
        row[f"state_mib_{L}"] = by_len[L]["state_bytes"] / MIB if L in by_len else None
    row["error"] = "; ".join(e for e in (result.get("error"), speed.get("error")) if e) or None
    return row


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    return buf.getvalue()


def _ratio(a, b):
    return a / b if a and b else None


def loss_noise(meta: dict) -> float:
    """The smallest loss gain claimed: 0.05 nats, or the range of the reference's losses over seeds."""
    losses = list(meta.get("reference_seed_losses", {}).values())
    return max(0.05, max(losses) - min(losses)) if losses else 0.05


def advantages(row: dict, ref: dict, lengths: list[int], noise: float = 0.05) -> list[tuple[float, str]]:
    """(strength, phrase) for every figure where `row` beats the reference by more than noise (`noise`: the
    smallest loss gain claimed, in nats)."""
    out, L = [], lengths[-1]
    both_causal = row["objective"] == ref["objective"] == "clm"
    if both_causal and row["val_loss"] is not None and ref["val_loss"] is not None:
        gain = ref["val_loss"] - row["val_loss"]
        if gain > noise:
            out.append((gain, f"lower loss at equal compute ({row['val_loss']:.3f} vs {ref['val_loss']:.3f})"))

    def higher(key, what, fmt, threshold=1.1):
        r = _ratio(row.get(key), ref.get(key))
        if r is not None and r >= threshold:
            out.append((math.log(r), f"{r:.1f}x {what} ({fmt(row[key])} vs {fmt(ref[key])})"))

    def lower(key, what, fmt, threshold=1.1):
        r = _ratio(ref.get(key), row.get(key))
        if r is not None and r >= threshold:
            out.append((math.log(r), f"{r:.1f}x less {what} ({fmt(row[key])} vs {fmt(ref[key])})"))

    higher("train_tokens_per_s", "training throughput", lambda v: f"{v:,.0f} tok/s")
    lower("train_peak_mib", "training memory", lambda v: f"{v:,.0f} MiB")
    higher("prefill_tokens_per_s", "prefill throughput", lambda v: f"{v:,.0f} tok/s")
    higher(f"decode_tokens_per_s_{L}", f"decode speed at {L:,} tokens", lambda v: f"{v:,.0f} tok/s")
    r = _ratio(ref.get(f"state_mib_{L}"), row.get(f"state_mib_{L}"))
    if r is not None and r >= 1.5:
        flat = row.get("state_bytes_per_context_token") == 0
        out.append((math.log(r), f"{r:,.0f}x smaller decode state at {L:,} tokens ({row[f'state_mib_{L}']:.3g} vs "
                                 f"{ref[f'state_mib_{L}']:.3g} MiB){', flat in context' if flat else ''}"))
    for task in ("recall", "copy"):  # an edge at a task the row does not solve (under half right) is no advantage
        a, b = row.get(f"{task}_accuracy"), ref.get(f"{task}_accuracy")
        if a is not None and b is not None and a - b >= 0.05 and a >= 0.5:
            out.append((math.log((a + 0.05) / (b + 0.05)), f"{task} accuracy {a:.0%} vs {b:.0%}"))
    r = _ratio(row.get("parameters"), row.get("active_parameters"))
    if r is not None and r >= 1.5:
        out.append((math.log(r), f"{r:.1f}x the parameters for the compute per token ({row['parameters']:,} total, "
                                 f"{row['active_parameters']:,} active)"))
    return sorted(out, key=lambda s: -s[0])


def measured_advantage(row: dict, ref: dict, lengths: list[int], noise: float = 0.05) -> str:
    if row["error"] and row["val_loss"] is None:
        return f"failed: {row['error']}"
    if row["key"] == ref["key"]:
        return "the reference row"
    found = advantages(row, ref, lengths, noise)[:2]
    name = ref["label"].split(" (")[0]
    if not found:
        return f"none over {name} at this budget"
    return "; ".join(p for _, p in found) + f" (vs {name})"


def short(row: dict) -> str:
    """The label without its parenthesis: "GPT (decoder-only)" -> "GPT"."""
    return row["label"].split(" (")[0]


def _fmt(v, spec: str, blank: str = "") -> str:
    return blank if v is None or v == "" else format(v, spec)


def statements(rows: list[dict], lengths: list[int], chance: dict[str, int] | None = None) -> list[str]:
    """Sentences that follow from the figures: who is best and worst at each, who is flat in context."""
    ok = [r for r in rows if not r["error"] or r["val_loss"] is not None]
    causal = [r for r in ok if r["objective"] == "clm" and r["val_loss"] is not None]
    out = []
    if causal:
        best, worst = min(causal, key=lambda r: r["val_loss"]), max(causal, key=lambda r: r["val_loss"])
        out.append(f"Lowest next-token loss at equal compute: {short(best)} ({best['val_loss']:.3f}); highest: "
                   f"{short(worst)} ({worst['val_loss']:.3f}); the spread is "
                   f"{worst['val_loss'] - best['val_loss']:.3f} "
                   "nats.")
    L0, L1 = lengths[0], lengths[-1]
    dec = [r for r in ok if r.get(f"state_mib_{L1}") is not None]
    flat = [short(r) for r in dec if r["state_bytes_per_context_token"] == 0]
    growing = sorted((r for r in dec if r["state_bytes_per_context_token"]),
                     key=lambda r: -r["state_bytes_per_context_token"])
    if flat:
        out.append(f"Decode state flat in context (the same bytes at {L0:,} and {L1:,} tokens): {', '.join(flat)}.")
    if growing:
        out.append("Decode state growing with context, bytes per token of context: " + ", ".join(
            f"{short(r)} {r['state_bytes_per_context_token']:,.0f}" for r in growing) + ".")
    timed = [r for r in dec if r.get("decode_slowdown")]
    if timed:
        slow = max(timed, key=lambda r: r["decode_slowdown"])
        steady = [short(r) for r in timed if r["decode_slowdown"] < 1.25]
        out.append(f"Batch-1 decode slows most from {L0:,} to {L1:,} tokens for {short(slow)} "
                   f"({slow['decode_slowdown']:.1f}x per token)" + (f"; within 25% at both lengths: {', '.join(steady)}"
                                                                      if steady else "") + ".")
    for task in ("recall", "copy"):
        scored = [r for r in ok if r.get(f"{task}_accuracy") is not None]
        if scored:
            best = max(scored, key=lambda r: r[f"{task}_accuracy"])
            worst = min(scored, key=lambda r: r[f"{task}_accuracy"])
            solved = [short(r) for r in scored if r[f"{task}_accuracy"] >= 0.9]
            name = "Associative recall" if task == "recall" else "Selective copying"
            tied = best[f"{task}_accuracy"] == worst[f"{task}_accuracy"]
            span = (f"every model at {best[f'{task}_accuracy']:.0%}" if tied
                    else f"best {short(best)} ({best[f'{task}_accuracy']:.0%}), worst {short(worst)} "
                         f"({worst[f'{task}_accuracy']:.0%})")
            odds = f" (chance: {1 / chance[task]:.0%} per answer token)" if chance else ""
            out.append(f"{name}{odds}: {span}"
                       + (f"; 90% or more: {', '.join(solved)}" if solved else "; none reached 90%") + ".")
    fast = [r for r in ok if r.get("train_tokens_per_s")]
    if fast:
        top = max(fast, key=lambda r: r["train_tokens_per_s"])
        out.append(f"Fastest to train: {short(top)} ({top['train_tokens_per_s']:,.0f} tokens/s).")
    failed = [f"{short(r)} ({r['error']})" for r in rows if r["error"]]
    if failed:
        out.append("Failed or partly failed: " + "; ".join(failed) + ".")
    return out


def markdown(rows: list[dict], meta: dict, figures: dict[str, str], data: dict[str, str],
             guide: str | None = None) -> str:
    """The page: the guide's table, the measured figures, statements, plots and where the raw data is."""
    lengths = meta["lengths"]
    ref = next((r for r in rows if r["key"] == REFERENCE), rows[0])
    noise = loss_noise(meta)
    from .entries import BY_KEY

    lines = [
        "# Choosing an architecture, measured",
        "",
        f"Produced by `{meta['command']}` on {meta['machine']} (torch {meta['torch']}), "
        f"{meta['date']}, in {meta['minutes']:.0f} minutes. Regenerate it with the same command; every figure "
        "below comes from that run.",
        "",
        f"Every architecture trained on {data_phrase(meta.get('data'))} with the same compute: "
        f"{meta['budget']:.3g} training FLOPs (6N + attention, per token, times the tokens; the FLOPs of each "
        f"row are stated), a BPE vocabulary of {meta['vocab_size']:,}, {meta['context']}-token sequences, batch "
        f"{meta['batch_size']}, width d_model {meta['d_model']}, and the depth that brings its FLOPs per token "
        f"nearest GPT's at {meta['depth']} layers; one seed ({meta['seed']}). The synthetic tasks "
        f"({meta['synthetic_tasks']}) trained each model afresh at {meta['synthetic_budget']:.3g} FLOPs. Speed figures "
        "are fp32, random weights, timed in turns across "
        f"the architectures, medians of {meta['repeats']} rounds. These are small models on a small budget: the "
        "table says what this run measured, not what holds at scale.",
        "",
        "| architecture | best for (the usual claim) | measured advantage (this run) | typical uses |",
        "|---|---|---|---|",
    ]
    for r in rows:
        e = BY_KEY[r["key"]]
        lines.append(f"| {r['label']} | {e.best_for} | {measured_advantage(r, ref, lengths, noise)} | {e.uses} |")
    lines += ["", "## The figures", "",
              "| architecture | layers | parameters (active) | FLOPs/token | tokens | val loss | recall | copy | "
              "train tok/s | train peak MiB | prefill tok/s | " + " | ".join(f"decode tok/s @{L}" for L in lengths)
              + " | " + " | ".join(f"state MiB @{L}" for L in lengths)
              + " | decode ms/token per 1k context | state bytes per context token |",
              "|---" * (14 + 2 * len(lengths)) + "|"]
    for r in rows:
        params = "" if r["parameters"] is None else (
            f"{r['parameters']:,}" + (f" ({r['active_parameters']:,})" if r["active_parameters"] != r["parameters"]
                                      else ""))
        loss = _fmt(r["val_loss"], ".3f") + ("" if r["objective"] == "clm" or r["val_loss"] is None
                                              else f" ({r['objective']})")
        cells = [r["label"], _fmt(r["n_layers"], "d"), params, _fmt(r["flops_per_token"], ".3g"),
                 _fmt(r["tokens"], ","), loss, _fmt(r["recall_accuracy"], ".0%", "n/a"),
                 _fmt(r["copy_accuracy"], ".0%", "n/a"), _fmt(r["train_tokens_per_s"], ",.0f"),
                 _fmt(r["train_peak_mib"], ",.0f"), _fmt(r["prefill_tokens_per_s"], ",.0f", "n/a")]
        cells += [_fmt(r[f"decode_tokens_per_s_{L}"], ",.0f", "n/a") for L in lengths]
        cells += [_fmt(r[f"state_mib_{L}"], ".3g", "n/a") for L in lengths]
        cells.append(_fmt(r["decode_ms_per_1k_context"], ".3f", "n/a"))
        cells.append(_fmt(r["state_bytes_per_context_token"], ",.0f", "n/a"))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Val loss is next-token cross-entropy (nats) on the held-out split, except where the objective is "
              "named: mlm (masked tokens, BERT) and span (span corruption, T5) are other tasks, reported apart and "
              "not ranked against it. Decode figures are batch 1 with that many tokens already in the sequence; "
              "n/a: not a decoder-only model. Train peak is "
              + ("the CUDA allocator's peak" if meta["device"].startswith("cuda") else
                 "the most bytes of live tensors during a step (parameters, gradients, AdamW state, activations)")
              + ".", "", "## What the numbers say", ""]
    seeds = meta.get("reference_seed_losses", {})
    if len(seeds) > 1:
        lines.append(f"- Seed noise: {short(ref)}'s validation loss at seeds {', '.join(seeds)} is "
                     f"{', '.join(f'{v:.3f}' for v in seeds.values())} (a range of "
                     f"{max(seeds.values()) - min(seeds.values()):.3f} nats); a loss gain of less than {noise:.3f} "
                     "is not claimed as an advantage above.")
    lines += [f"- {s}" for s in statements(rows, lengths, meta.get("answer_vocab"))]
    if figures:
        lines += ["", "## Plots", ""] + [f"![{title}]({path})" for title, path in figures.items()]
    lines += ["", "Raw data: " + ", ".join(f"[{name}]({path})" for name, path in data.items()) + "."]
    if guide:
        lines += ["", f"How to read it (seed noise, the synthetic budget, CPU kernels, what decode state llmarch "
                      f"allocates) and how the run works: [{guide}]({guide})."]
    return "\n".join(lines) + "\n"
