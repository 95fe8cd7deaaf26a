"""Scaling-law fits (scaling/fit.py) and `llmarch scaling`: recovery of a known Chinchilla law from noisy
points, the compute-optimal allocation, Kaplan power laws with bootstrap intervals, CLI errors."""
import contextlib
import csv
import io
import json
import subprocess
import sys

import numpy as np
import pytest

from llmarch.errors import LlmarchError
from llmarch.scaling import ChinchillaFit, compute_optimal, fit_chinchilla, fit_power_law, read_points

TRUE = ChinchillaFit(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)  # Hoffmann et al. 2022's fitted law
SMALL_GRID = dict(alpha=(0.25, 0.5), beta=(0.25, 0.5), e=(0.0, 1.0), a=(5.0, 10.0), b=(5.0, 10.0))


def points(noise=0.005, seed=0):
    rng = np.random.default_rng(seed)
    N, D = np.repeat(np.logspace(6, 9, 6), 5), np.tile(np.logspace(8, 11, 5), 6)
    return N, D, TRUE.loss(N, D) * np.exp(rng.normal(0, noise, N.shape))


def test_fit_recovers_a_known_law_from_noisy_points():
    fit = fit_chinchilla(*points(), grid=SMALL_GRID)
    assert abs(fit.alpha - TRUE.alpha) < 0.03 and abs(fit.beta - TRUE.beta) < 0.03
    assert abs(fit.E - TRUE.E) < 0.1


def test_compute_optimal_minimises_the_law_on_the_flops_budget():
    C = 1e21
    best = compute_optimal(TRUE, C)
    assert best["params"] * best["tokens"] * 6 == pytest.approx(C)
    loss = TRUE.loss(best["params"], best["tokens"])
    for factor in (0.5, 0.8, 1.25, 2.0):  # any other split of the same compute is worse
        n = best["params"] * factor
        assert TRUE.loss(n, C / (6 * n)) > loss
    with pytest.raises(LlmarchError, match="must be positive"):
        compute_optimal(TRUE, 0)


def test_kaplan_power_law_with_bootstrap_interval():
    rng = np.random.default_rng(1)
    N = np.logspace(5, 9, 12)
    L = (8.8e13 / N) ** 0.076 * np.exp(rng.normal(0, 0.002, N.shape))  # Kaplan et al. 2020, eq. 1.1
    fit = fit_power_law(N, L, "params", bootstrap=300)
    assert abs(fit.alpha - 0.076) < 0.005 and fit.alpha_ci[0] < fit.alpha < fit.alpha_ci[1]


def run(*args):
    """`llmarch scaling ARGS` in this process (what the command line runs, without a ~3 s interpreter start)."""
    from llmarch.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["scaling", *args])
    return code, out.getvalue(), err.getvalue()


def test_cli_fit_and_optimal(tmp_path):
    N, D, L = points()
    csv = tmp_path / "sweep.csv"
    csv.write_text("params,tokens,loss\n" + "".join(f"{n},{d},{v}\n" for n, d, v in zip(N, D, L)))
    assert set(read_points(csv)) == {"params", "tokens", "loss"}
    code, out, err = run("fit", str(csv), "--json")
    assert code == 0, err
    fit = json.loads(out)
    assert set(fit) == {"E", "A", "B", "alpha", "beta"} and abs(fit["alpha"] - 0.34) < 0.03
    code, out, err = run("optimal", "--flops", "1e21", "--fit", str(csv), "--json")
    best = json.loads(out)
    assert code == 0 and best["params"] * best["tokens"] * 6 == pytest.approx(1e21)
    bad = tmp_path / "bad.csv"
    bad.write_text("params,loss\n1,2\n")
    code, _, err = run("fit", str(bad))
    assert code == 2 and "lacks column(s) tokens" in err and len(err.strip().splitlines()) == 1


def test_scaled_config_keeps_the_base_shape():
    from llmarch.presets import resolve
    from llmarch.scaling.sweep import scaled_config

    base = resolve("llama-tiny")  # head width 32, 2 query heads per KV head, explicit FFN width 768 at d 256
    cfg = scaled_config(base, 128, 3)
    assert (cfg.d_model, cfg.n_layers, cfg.head_dim, cfg.n_heads, cfg.n_kv_heads) == (128, 3, 32, 4, 2)
    assert cfg.ffn_hidden == base.ffn_hidden // 2
    with pytest.raises(LlmarchError, match="multiple of the base head width 32"):
        scaled_config(base, 48, 2)


SWEEP = ["sweep", "--model", "gpt-tiny", "--sizes", "32x1,64x2,96x3", "--tokens", "1e4,4e4", "--context-length",
         "64", "--batch-size", "8", "--tokenizer", "byte", "--vocab-size", "260", "--eval-tokens", "4096",
         "--lr", "3e-3", "--quiet"]


def test_tiny_sweep_on_the_embedded_corpus_fits_positive_exponents(tmp_path):
    out = tmp_path / "sweep"
    code, stdout, err = run(*SWEEP, "--out", str(out))
    assert code == 0, err
    with open(out / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and {"params", "tokens", "loss", "total_params", "flops"} <= set(rows[0])
    for r in rows:  # C = 6ND plus the attention term, and embeddings excluded from N
        assert int(r["flops"]) > 6 * int(r["params"]) * int(r["tokens"]) and int(r["total_params"]) > int(r["params"])
    fit = json.loads((out / "fit.json").read_text())
    assert fit["alpha"] > 0 and fit["beta"] > 0, fit  # bigger models and longer runs both lower the loss
    pts = read_points(out / "sweep.csv")
    for n in np.unique(pts["params"]):  # Kaplan's L(D) at each size: the loss falls with tokens
        sel = pts["params"] == n
        assert fit_power_law(pts["tokens"][sel], pts["loss"][sel], "tokens", bootstrap=10).alpha > 0
    assert (out / "loss-vs-compute.png").stat().st_size > 0 and (out / "isoflop.png").stat().st_size > 0
    assert "L(N, D) =" in stdout
    before = (out / "sweep.csv").read_text()
    from llmarch.presets import resolve
    from llmarch.scaling.sweep import sweep
    from llmarch.train import TrainConfig

    said = []  # run again (in this process): every row is there, nothing retrains
    rows = sweep(resolve("gpt-tiny", context_length=64, vocab_size=260), [(32, 1), (64, 2), (96, 3)], [10000, 40000],
                 TrainConfig(batch_size=8, tokenizer="byte", eval_tokens=4096, lr=3e-3), out, log=said.append)
    assert len(rows) == 6 and said == [] and (out / "sweep.csv").read_text() == before


def test_sweep_errors_are_one_line(tmp_path):
    for sizes, message in (("33x1", "multiple of the base head width"), ("64", "is not DxL")):
        code, _, err = run("sweep", "--model", "gpt-tiny", "--sizes", sizes, "--tokens", "1e4", "--out",
                           str(tmp_path / "x"))
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_a_sweep_run_again_with_other_settings_is_refused(tmp_path):
    """Rows are matched by name: a sweep into a directory of another model or learning rate reported the other
    sweep's rows as its own, training nothing. Now refused, naming the difference; a new size may be added."""
    grid = ["sweep", "--sizes", "32x1", "--tokens", "2560", "--context-length", "32", "--batch-size", "8",
            "--tokenizer", "byte", "--vocab-size", "260", "--eval-tokens", "1024", "--quiet", "--out",
            str(tmp_path / "s")]
    assert run(*grid, "--model", "gpt-tiny")[0] == 0
    for extra, named in ((["--model", "llama-tiny"], "model.name"), (["--model", "gpt-tiny", "--lr", "1e-2"],
                                                                      "training.lr")):
        code, _, err = run(*grid, *extra)
        assert code == 2 and named in err and len(err.strip().splitlines()) == 1, err
    code, _, err = run(*grid[:1], "--sizes", "32x1,32x2", *grid[3:], "--model", "gpt-tiny")
    assert code == 0, err
    assert len(read_points(tmp_path / "s" / "sweep.csv")["loss"]) == 2


def test_params_column_chooses_what_counts_as_n(tmp_path):
    csv_path = tmp_path / "s.csv"
    csv_path.write_text("params,total_params,tokens,loss\n10,30,100,3.0\n20,40,100,2.5\n")
    assert read_points(csv_path)["params"].tolist() == [10, 20]
    assert read_points(csv_path, "total_params")["params"].tolist() == [30, 40]
    with pytest.raises(LlmarchError, match="lacks column\\(s\\) n_total"):
        read_points(csv_path, "n_total")


def test_sweep_under_torchrun_matches_one_process(tmp_path):
    """Two processes (DDP, gloo) train each point of the grid as one process does, in one process group kept
    for the whole sweep (a group made and torn down per run hangs the second run's rendezvous)."""
    import os

    grid = ["sweep", "--model", "gpt-tiny", "--sizes", "32x1,64x1", "--tokens", "2560", "--context-length", "32",
            "--batch-size", "8", "--tokenizer", "byte", "--vocab-size", "260", "--eval-tokens", "1024", "--quiet"]
    code, _, err = run(*grid, "--out", str(tmp_path / "one"))
    assert code == 0, err
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "llmarch", "scaling", *grid, "--out", str(tmp_path / "two")], capture_output=True,
                          text=True, timeout=180, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    one, two = (read_points(tmp_path / d / "sweep.csv") for d in ("one", "two"))
    assert len(two["loss"]) == 2 and np.allclose(one["loss"], two["loss"], rtol=1e-5)
