"""`llmarch scaling fit | optimal | sweep`: scaling laws fitted to a sweep's losses, compute-optimal sizes, and
the sweep itself (scaling/)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .options import Parser, add_fields, check_out_dir, finite, collect, model_config, model_overrides


def add_parsers(sub) -> None:
    from ..train import TrainConfig

    p = sub.add_parser("scaling", help="scaling laws: train a sweep, fit Chinchilla and Kaplan laws, compute-optimal "
                                       "sizes")
    scaling = p.add_subparsers(dest="action", required=True, parser_class=Parser)
    q = scaling.add_parser("fit", help="fit L(N, D) = E + A/N^alpha + B/D^beta to a sweep CSV (params,tokens,loss); "
                                       "Kaplan's L(N) or L(D) too for one-variable sweeps")
    q.add_argument("file", help="the sweep CSV (required)")
    q.add_argument("--json", action="store_true", help="print one JSON object: E, A, B, alpha, beta "
                                                       "(default: %(default)s)")
    q.add_argument("--plots", default=None, help="directory for loss-vs-compute.png, isoflop.png and fit.json "
                                                 "(default: %(default)s)")
    q.add_argument("--params-column", default="params", help="the column read as N: a sweep's params is "
                   "non-embedding (Kaplan), total_params counts the embeddings too (Chinchilla) (default: %(default)s)")
    q.set_defaults(func=cmd_scaling_fit)
    q = scaling.add_parser("optimal", help="the parameters and tokens that minimise the fitted loss for --flops")
    q.add_argument("--flops", type=finite, required=True, help="the budget C = 6ND (required)")
    q.add_argument("--fit", required=True, help="the sweep CSV to fit (required)")
    q.add_argument("--json", action="store_true", help='print {"params": N, "tokens": D} (default: %(default)s)')
    q.add_argument("--params-column", default="params", help="the column read as N (default: %(default)s)")
    q.set_defaults(func=cmd_scaling_optimal)
    q = scaling.add_parser("sweep", help="train every size at every token budget from a base config; a CSV row "
                                         "per run, then the fit and its plots")
    q.add_argument("--model", required=True, help="base preset name or .json/.yaml config (required)")
    q.add_argument("--sizes", required=True, help="d_model x n_layers, comma-separated, e.g. 64x2,128x4 (required)")
    q.add_argument("--tokens", required=True, help="training tokens per run, comma-separated, e.g. 2e5,8e5 "
                                                   "(required)")
    q.add_argument("--out", required=True, help="directory for sweep.csv, runs/, fit.json and plots (required)")
    q.add_argument("--quiet", action="store_true", help="no per-run progress (default: %(default)s)")
    add_fields(q.add_argument_group("training (shared by every run)"), TrainConfig,
               skip=("steps", "eval_every", "sample_prompt", "sample_tokens", "keep_checkpoints"))
    model_overrides(q)
    q.set_defaults(func=cmd_scaling_sweep)


def _fit_and_plot(pts, out: Path | None):
    from ..scaling import fit_chinchilla
    from ..scaling.plots import isoflop, loss_vs_compute

    fit = fit_chinchilla(pts["params"], pts["tokens"], pts["loss"])
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        loss_vs_compute(pts, fit, out / "loss-vs-compute.png")
        isoflop(pts, fit, out / "isoflop.png")
        (out / "fit.json").write_text(json.dumps(fit.to_dict(), indent=2) + "\n")
    return fit


def _print_fit(fit, pts) -> None:
    from ..scaling import fit_power_law

    print("L(N, D) = {E:.4g} + {A:.4g} / N^{alpha:.4f} + {B:.4g} / D^{beta:.4f}".format(**fit.to_dict()))
    varies = {var: len(set(pts[var].tolist())) > 1 for var in ("params", "tokens")}
    for var, other in (("params", "tokens"), ("tokens", "params")):
        if varies[var] and not varies[other]:  # a one-variable sweep: Kaplan's power law in that variable
            k = fit_power_law(pts[var], pts["loss"], var)
            print(f"L({var}) = ({k.x_c:.4g} / {var})^{k.alpha:.4f}, alpha 95% CI "
                  f"[{k.alpha_ci[0]:.4f}, {k.alpha_ci[1]:.4f}]")


def cmd_scaling_fit(args) -> None:
    from ..scaling import read_points

    pts = read_points(args.file, args.params_column)
    fit = _fit_and_plot(pts, Path(args.plots) if args.plots else None)
    if args.json:
        print(json.dumps(fit.to_dict()))
    else:
        _print_fit(fit, pts)
        if args.plots:
            print(f"plots: {Path(args.plots) / 'loss-vs-compute.png'}, {Path(args.plots) / 'isoflop.png'}")


def cmd_scaling_optimal(args) -> None:
    from ..scaling import compute_optimal, fit_chinchilla, read_points

    pts = read_points(args.fit, args.params_column)
    best = compute_optimal(fit_chinchilla(pts["params"], pts["tokens"], pts["loss"]), args.flops)
    if args.json:
        print(json.dumps(best))
    else:
        print(f"compute-optimal for {args.flops:.3g} FLOPs: {best['params']:.4g} parameters, "
              f"{best['tokens']:.4g} tokens")


def cmd_scaling_sweep(args) -> None:
    from ..scaling import read_points
    from ..scaling.sweep import CSV_NAME, parse_budgets, parse_sizes, sweep
    from ..train import TrainConfig
    from ..train.distributed import rank_and_world

    sizes, budgets = parse_sizes(args.sizes), parse_budgets(args.tokens)
    tc = TrainConfig(**collect(args, TrainConfig))
    tc.validate()
    check_out_dir(args.out)
    lead = rank_and_world()[0] == 0  # under torchrun every process trains, the first one reports
    rows = sweep(model_config(args), sizes, budgets, tc, args.out, verbose=not args.quiet,
                 log=lambda m: print(m, file=sys.stderr) if lead else None)
    out = Path(args.out)
    if not lead:
        return
    print(f"{len(rows)} runs in {out / CSV_NAME}")
    if len(rows) >= 5:
        pts = read_points(out / CSV_NAME)
        _print_fit(_fit_and_plot(pts, out), pts)
        print(f"fit: {out / 'fit.json'}; plots: {out / 'loss-vs-compute.png'}, {out / 'isoflop.png'}")
