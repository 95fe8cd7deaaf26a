"""A scaling sweep: one training run per (model size, token budget) from a base config, each with its own
cosine schedule ending at its budget (Hoffmann et al. 2022 §3: a schedule longer than the run overstates
the loss of the shorter runs), recording a row per run to a CSV that `scaling fit` reads.

Sizes are d_model x n_layers. The base config's shape is kept: its head width (so n_heads grows with d_model),
its query heads per KV head, and its FFN and expert widths in proportion to d_model. `params` is the
non-embedding parameter count N of Kaplan et al. 2020 §2.1 (at small scale the embedding matrix is a large
and scale-independent share of the total, which bends the power law); `total_params` is there too.
`flops` is the training compute of the run from the accounting (6N plus the attention term, per token, times
the tokens); C = 6ND, which `scaling optimal` uses, is `6 * params * tokens`.

The CSV is rewritten atomically after each run, and a sweep run again skips the rows it has and resumes a
run that was interrupted, so stopping a long sweep loses at most the run in flight. The base config and the
training settings that change a run's loss are kept in out/settings.json: a sweep run again with other ones is
refused (its rows would be another sweep's), while sizes and budgets may be added."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, replace
from pathlib import Path

from ..analysis.accounting import model_facts
from ..rundir import write_text_atomic
from ..trust import read_json
from ..config import ModelConfig
from ..errors import LlmarchError
from ..train.distributed import device_for, process_group, rank_and_world

COLUMNS = ("name", "d_model", "n_layers", "params", "total_params", "tokens", "steps", "flops", "loss")
CSV_NAME = "sweep.csv"


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """'64x2,128x4' -> [(64, 2), (128, 4)] (d_model x n_layers)."""
    sizes = []
    for item in text.split(","):
        try:
            d, n = (int(v) for v in item.strip().lower().split("x"))
        except ValueError:
            raise LlmarchError(f"size {item.strip()!r} is not DxL (d_model x n_layers, e.g. 64x2)") from None
        if d <= 0 or n <= 0:
            raise LlmarchError(f"size {item.strip()!r}: d_model and n_layers must be positive")
        sizes.append((d, n))
    return sizes


def parse_budgets(text: str) -> list[int]:
    """'2e4,8e4' -> [20000, 80000] (training tokens per run)."""
    budgets = []
    for item in text.split(","):
        try:
            value = float(item)
        except ValueError:
            raise LlmarchError(f"token budget {item.strip()!r} is not a number") from None
        if value < 1:
            raise LlmarchError(f"token budget {item.strip()!r} must be at least 1")
        budgets.append(int(value))
    return budgets


def scaled_config(base: ModelConfig, d_model: int, n_layers: int) -> ModelConfig:
    """The base config at width d_model and depth n_layers, its shape otherwise kept."""
    if d_model % base.head_dim:
        raise LlmarchError(f"size {d_model}x{n_layers}: d_model must be a multiple of the base head width "
                           f"{base.head_dim}")
    heads = d_model // base.head_dim
    group = base.n_heads // base.n_kv_heads  # query heads per KV head
    ratio = d_model / base.d_model
    over = dict(name=f"{base.name}-{d_model}x{n_layers}", d_model=d_model, n_layers=n_layers, n_heads=heads,
                n_kv_heads=max(1, heads // group), head_dim=None)
    if "ffn_hidden" not in base._derived:
        over["ffn_hidden"] = max(1, round(base.ffn_hidden * ratio))
    if "expert_hidden" not in base._derived:
        over["expert_hidden"] = max(1, round(base.expert_hidden * ratio))
    if base.is_encoder_decoder:
        over["n_decoder_layers"] = n_layers
    return base.replace(**over)


def run_name(d_model: int, n_layers: int, tokens: int) -> str:
    return f"d{d_model}-l{n_layers}-t{tokens}"


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def _final_val_loss(run: Path) -> float | None:
    """The last validation loss a finished run logged (metrics.csv), or None."""
    rows = [r for r in read_rows(run / "metrics.csv") if r.get("val_loss")]
    return float(rows[-1]["val_loss"]) if rows else None


def _run_point(cfg: ModelConfig, steps: int, per_step: int, tc, out: Path, done: set, verbose: bool, log,
               counter: str) -> dict | None:
    """Train one point of the grid (or resume it, or read its finished run) and return its CSV row; None if
    the CSV has it already."""
    from ..train import train

    tokens = steps * per_step
    name = run_name(cfg.d_model, cfg.n_layers, tokens)
    if name in done:
        return None
    facts = model_facts(cfg)
    log(f"{counter} {name}: {facts['non_embedding_parameters']:,} non-embedding parameters, {steps} steps, "
        f"{tokens:,} tokens")
    run = out / "runs" / name
    resume = (run / "latest").exists()
    loss = _final_val_loss(run) if resume else None
    if loss is None:
        run_tc = replace(tc, steps=steps, eval_every=steps, sample_prompt=None)
        loss = train(None if resume else cfg, run_tc, run, resume=resume, verbose=verbose).val_losses[steps]
    return dict(name=name, d_model=cfg.d_model, n_layers=cfg.n_layers, params=facts["non_embedding_parameters"],
                total_params=facts["parameters"], tokens=tokens, steps=steps,
                flops=facts["flops_per_token"] * tokens, loss=f"{loss:.6f}")


def check_settings(out: Path, base: ModelConfig, tc, write: bool) -> None:
    """The sweep in `out` was run with this base config and these training settings (those a resumed run may
    not change, train/pretrain.MAY_CHANGE), else one line naming what differs; a new sweep records them."""
    from ..train.pretrain import MAY_CHANGE

    mine = {"model": base.to_dict(), "training": {k: v for k, v in asdict(tc).items() if k not in MAY_CHANGE}}
    path = out / "settings.json"
    if path.is_file():
        theirs = read_json(path)
        differ = sorted(f"{part}.{k}" for part in mine for k in set(mine[part]) | set(theirs.get(part, {}))
                        if mine[part].get(k) != theirs.get(part, {}).get(k))
        if differ:
            raise LlmarchError(f"{out} holds a sweep with other settings ({', '.join(differ)}); run it again with "
                               "the same ones (sizes and budgets may be added) or choose another --out")
    elif write:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(mine, indent=2) + "\n")


def sweep(base: ModelConfig, sizes: list[tuple[int, int]], budgets: list[int], tc, out: str | Path,
          verbose: bool = True, log=print) -> list[dict]:
    """Train every size at every budget (tc: the TrainConfig shared by all runs; its steps are set per
    budget) into out/runs/NAME, appending a row per run to out/sweep.csv. Returns all rows."""
    out = Path(out)
    if base.head != "lm":
        raise LlmarchError("a scaling sweep trains language models (head lm)")
    configs = [scaled_config(base, d, n) for d, n in sizes]  # every size checked before any run starts
    per_step = tc.batch_size * tc.grad_accum * base.context_length
    plan = []
    for cfg in configs:
        for budget in budgets:
            steps = max(1, round(budget / per_step))
            plan.append((cfg, steps))
    rank = rank_and_world()[0]
    check_settings(out, base, tc, write=rank == 0)
    csv_path = out / CSV_NAME
    rows = read_rows(csv_path)
    out.mkdir(parents=True, exist_ok=True)
    # under torchrun, one process group for the whole sweep (each run's train() joins it rather than making
    # and tearing down its own, which a second run's rendezvous would wait on forever)
    with process_group(device_for(tc.device)):
        for i, (cfg, steps) in enumerate(plan):
            row = _run_point(cfg, steps, per_step, tc, out, {r["name"] for r in rows}, verbose, log,
                             f"[{i + 1}/{len(plan)}]")
            if row is not None:
                rows.append(row)
                if rank == 0:
                    write_rows(csv_path, rows)
    return rows
