"""`llmarch compare`, the run: size every entry for the budget, train each (its result written atomically to
out/results/KEY.json, so a stopped run resumes at the entry it was on: a finished entry is read back, the one in
flight resumes from its last checkpoint in out/runs/KEY), measure speed across all of them in turns
(out/speed.json), then write the table, CSV, JSON and plots; with `doc`, the page and its figures there too.

A failed entry is recorded in its row (and tried again by the next run) and the others go on; an interrupt
stops the run, to be resumed. The settings are kept in out/settings.json: a run that resumes with other
settings would mix two comparisons, so it is refused."""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, replace
from datetime import date
from pathlib import Path

import torch

from ..analysis.accounting import model_facts
from ..device import machine_name, parse_device
from ..errors import LlmarchError, check_fields
from ..rundir import write_text_atomic
from . import plots, report
from .entries import REFERENCE, Entry
from .quality import Synthetic, synthetic, train_lm
from .sizing import Shape, flops_per_token, reference_flops, sized, steps_for
from .speed import SpeedConfig, failure, measure


@dataclass
class CompareConfig:
    budget: float = 1.5e12  # training FLOPs of every entry on the corpus
    synthetic_budget: float = 6e11  # training FLOPs of every entry on each synthetic task; 0: skip them
    d_model: int = 128  # width of every entry
    depth: int = 4  # GPT's layers; every other entry's depth matches its FLOPs per token
    vocab_size: int = 2048  # BPE vocabulary trained on the corpus
    context: int = 256  # training sequence length
    batch_size: int = 16  # sequences per step
    lr: float = 2e-3  # peak learning rate (cosine to a tenth of it)
    evals: int = 4  # validation points per run (the loss-vs-compute curve)
    eval_tokens: int = 16384  # validation tokens per point
    lengths: str = "1024,4096,16384"  # contexts of the decode figures
    repeats: int = 3  # rounds of every timed figure
    seed: int = 0  # of every model's init, batches and validation windows
    # the reference (GPT) trains again at the next seeds, so the page can say how far a change of seed moves the
    # loss: smaller loss differences are not claimed as advantages
    noise_seeds: int = 3
    data: str | None = None  # the training text; None: the embedded standard-library corpus
    device: str | None = None  # cpu, cuda, cuda:N or mps; None: cuda if available, else cpu

    def validate(self) -> list[int]:
        check_fields(self, positive=("budget", "d_model", "depth", "vocab_size", "context", "batch_size", "lr",
                                     "evals", "eval_tokens", "repeats", "noise_seeds"),
                     nonnegative=("synthetic_budget", "seed"))
        try:
            lengths = sorted({int(v) for v in self.lengths.split(",")})
        except ValueError:
            lengths = []
        if not lengths or lengths[0] < 1:
            raise LlmarchError(f"--lengths must be positive integers separated by commas, got {self.lengths!r}")
        parse_device(self.device)
        return lengths

    def shape(self) -> Shape:
        return Shape(self.d_model, self.depth, self.vocab_size, self.context, self.batch_size)

    def settings(self) -> dict:
        """What makes two runs one comparison (where and how long to time may differ)."""
        return {k: v for k, v in asdict(self).items() if k not in ("device", "repeats")}


def _train_config(cc: CompareConfig, entry: Entry, steps: int):
    from ..train import TrainConfig

    every = max(1, steps // cc.evals)
    return TrainConfig(steps=steps, objective=entry.objective, batch_size=cc.batch_size, lr=cc.lr, min_lr=cc.lr / 10,
                       warmup_steps=max(1, steps // 10), eval_every=every, save_every=every,
                       eval_tokens=cc.eval_tokens, keep_checkpoints=1, seed=cc.seed, data=cc.data, device=cc.device)


def _entry(entry: Entry, cc: CompareConfig, target: int, out: Path, verbose: bool, run: str | None = None,
           synthetic_tasks: bool = True) -> dict:
    """Size, train and score one entry: its result (trained in out/runs/RUN, RUN the entry's key by default)."""
    shape = cc.shape()
    cfg = sized(entry, shape, target)
    facts = model_facts(cfg)
    steps = steps_for(cfg, cc.budget, shape)
    tokens = steps * cc.batch_size * cc.context
    result = {"key": entry.key, "label": entry.label, "objective": entry.objective, "d_model": cfg.d_model,
              "n_layers": cfg.n_layers, "parameters": facts["parameters"],
              "active_parameters": facts["active_parameters"], "flops_per_token": flops_per_token(cfg),
              "steps": steps, "tokens": tokens, "train_flops": flops_per_token(cfg) * tokens,
              "config": cfg.to_dict(), "val_loss": None, "recall_accuracy": None, "copy_accuracy": None}
    t0 = time.perf_counter()
    try:
        result.update(train_lm(entry, cfg, _train_config(cc, entry, steps), out / "runs" / (run or entry.key),
                               verbose))
        if entry.causal and cc.synthetic_budget and synthetic_tasks:
            syn = synthetic(entry, cfg, Synthetic(budget=cc.synthetic_budget), cc.device, cc.seed)
            result.update(recall_accuracy=syn["recall"]["accuracy"], copy_accuracy=syn["copy"]["accuracy"],
                          synthetic_steps={k: v["steps"] for k, v in syn.items()})
    except Exception as e:  # noqa: BLE001 - one entry's failure is its row's; an interrupt stops the run
        if getattr(e, "exit_code", 2) != 2:
            raise
        result["error"] = failure(e)
    result["seconds"] = time.perf_counter() - t0
    return result


def _check_settings(out: Path, cc: CompareConfig) -> None:
    path = out / "settings.json"
    mine = cc.settings()
    if path.is_file():
        theirs = json.loads(path.read_text())
        differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if differ:
            raise LlmarchError(f"{out} holds a comparison with other settings ({', '.join(differ)}); resume it "
                               "with the same ones or choose another --out")
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(mine, indent=2) + "\n")


def compare(entries: list[Entry], cc: CompareConfig, out: str | Path, doc: str | Path | None = None,
            command: str = "llmarch compare", verbose: bool = False, log=print) -> dict:
    """Run (or resume) the comparison of `entries` into `out`; returns {"rows", "meta", "files"}."""
    lengths = cc.validate()
    out = Path(out)
    _check_settings(out, cc)
    (out / "results").mkdir(parents=True, exist_ok=True)
    target = reference_flops(cc.shape())
    results: dict[str, dict] = {}
    # every entry, then the reference again at the next seeds (its loss only): the seed noise
    plan = [(e, e.key, cc) for e in entries]
    plan += [(e, f"{e.key}-seed{cc.seed + k}", replace(cc, seed=cc.seed + k)) for e in entries if e.key == REFERENCE
             for k in range(1, cc.noise_seeds)]
    for i, (entry, key, run_cc) in enumerate(plan):
        counter = f"[{i + 1}/{len(plan)}] {key}"
        path = out / "results" / f"{key}.json"
        if path.is_file():
            saved = json.loads(path.read_text())
            if not saved.get("error"):
                results[key] = saved
                log(f"{counter}: done before (val loss {saved['val_loss']:.3f})")
                continue
        log(f"{counter}: training")
        result = _entry(entry, run_cc, target, out, verbose, run=key, synthetic_tasks=key == entry.key)
        write_text_atomic(path, json.dumps(result, indent=1) + "\n")
        results[key] = result
        log(f"{counter}: " + (f"failed: {result['error']}" if result.get("error") else
            f"{result['n_layers']} layers, {result['tokens']:,} tokens, val loss {result['val_loss']:.3f}"
            + (f", recall {result['recall_accuracy']:.0%}, copy {result['copy_accuracy']:.0%}"
               if result["recall_accuracy"] is not None else "")))

    speed, speed_seconds = _speed(entries, results, cc, lengths, out, log)
    rows = [report.flat_row(results[e.key], speed.get(e.key, {}), lengths) for e in entries]
    # the whole comparison's time, over the runs that made it: each entry's, and the speed phase's
    seconds = sum(r.get("seconds", 0.0) for r in results.values()) + speed_seconds
    meta = _meta(cc, lengths, command, seconds)
    meta["reference_seed_losses"] = {str(run_cc.seed): results[key]["val_loss"] for e, key, run_cc in plan
                                     if e.key == REFERENCE and results[key].get("val_loss") is not None}
    files = _write(rows, {e.key: results[e.key] for e in entries}, speed, meta, out, Path(doc) if doc else None)
    return {"rows": rows, "meta": meta, "files": files}


def _speed(entries, results, cc: CompareConfig, lengths, out: Path, log) -> dict:
    path = out / "speed.json"
    keys = [e.key for e in entries]
    if path.is_file():
        saved = json.loads(path.read_text())
        if sorted(saved["entries"]) == sorted(keys):
            return saved["entries"], saved["seconds"]
    from ..config import ModelConfig

    t0 = time.perf_counter()
    configs = {k: ModelConfig.from_dict(results[k]["config"]) for k in keys if "config" in results[k]}
    sc = SpeedConfig(lengths=tuple(lengths), repeats=cc.repeats)
    speed = measure(entries, configs, cc.batch_size, cc.context, sc, parse_device(cc.device), log)
    seconds = time.perf_counter() - t0
    write_text_atomic(path, json.dumps({"seconds": seconds, "entries": speed}, indent=1) + "\n")
    return speed, seconds


def _meta(cc: CompareConfig, lengths, command: str, seconds: float) -> dict:
    device = parse_device(cc.device)
    machine = machine_name(device)
    syn = Synthetic()
    tasks = (f"associative recall of {syn.recall.pairs} pairs ({syn.recall.keys} keys, {syn.recall.values} values, "
             f"{syn.recall.seq_len} tokens) and selective copying of {syn.copy.data_tokens} tokens scattered over "
             f"{syn.copy.length}")
    answers = {"recall": syn.recall.values, "copy": syn.copy.data_vocab}
    return {**asdict(cc), "lengths": lengths, "answer_vocab": answers,
            "synthetic_tasks": tasks, "command": command, "machine": machine, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "device": str(device), "date": date.today().isoformat(),
            "minutes": seconds / 60}


def _write(rows, results, speed, meta, out: Path, doc: Path | None) -> dict:
    labels = {k: r["label"].split(" (")[0] for k, r in results.items()}
    figures = {"loss vs compute": "loss-vs-compute.png", "decode time and state vs context": "decode-vs-context.png",
               "synthetic tasks": "synthetic.png"}
    plots.loss_vs_compute(results, out / figures["loss vs compute"])
    plots.decode_vs_context(speed, labels, out / figures["decode time and state vs context"])
    if any(r.get("recall_accuracy") is not None for r in results.values()):
        plots.synthetic_accuracy(results, out / figures["synthetic tasks"])
    else:
        del figures["synthetic tasks"]
    write_text_atomic(out / "compare.csv", report.to_csv(rows))
    write_text_atomic(out / "compare.json", json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    page = report.markdown(rows, meta, figures, {"CSV": "compare.csv", "JSON": "compare.json"})
    write_text_atomic(out / "choosing-an-architecture.md", page)
    files = {"table": out / "choosing-an-architecture.md", "csv": out / "compare.csv", "json": out / "compare.json",
             **{name: out / png for name, png in figures.items()}}
    if doc is not None:  # the page, its figures under figures/ and its data beside it
        doc.parent.mkdir(parents=True, exist_ok=True)
        (doc.parent / "figures").mkdir(exist_ok=True)
        stem = doc.stem
        moved = {}
        for title, png in figures.items():
            shutil.copyfile(out / png, doc.parent / "figures" / f"{stem}-{png}")
            moved[title] = f"figures/{stem}-{png}"
        shutil.copyfile(out / "compare.csv", doc.with_suffix(".csv"))
        shutil.copyfile(out / "compare.json", doc.with_suffix(".json"))
        guide = "compare.md" if (doc.parent / "compare.md").is_file() else None  # the tool's page, in docs/
        write_text_atomic(doc, report.markdown(rows, meta, moved, {"CSV": doc.with_suffix(".csv").name,
                                                                   "JSON": doc.with_suffix(".json").name}, guide))
        files["doc"] = doc
    return files
