"""`llmarch compare`: a tiny comparison of three families end to end (table, CSV, JSON, plots, resume, a
failed entry), the sizing at equal compute, and the statements the table makes from its numbers."""
from __future__ import annotations

import csv
import json
import math
import sysconfig
from pathlib import Path

import pytest

from llmarch.cli import main
from llmarch.compare import CompareConfig, compare, select
from llmarch.compare import quality
from llmarch.compare.entries import ENTRIES
from llmarch.compare.report import advantages, loss_noise, measured_advantage, statements
from llmarch.compare.sizing import Shape, flops_per_token, reference_flops, sized, steps_for
from llmarch.errors import LlmarchError

TINY = dict(budget=1e8, synthetic_budget=5e8, d_model=32, depth=2, vocab_size=300, context=32, batch_size=4,
            evals=2, eval_tokens=256, lengths="16,64", repeats=1)
PNG = b"\x89PNG"


@pytest.fixture(scope="module")
def text(tmp_path_factory) -> str:
    """A small corpus (a few standard-library modules), so the BPE tokenizer trains in a moment."""
    lib = Path(sysconfig.get_paths()["stdlib"])
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_text("\n\n".join((lib / f).read_text() for f in ("textwrap.py", "bisect.py", "shlex.py")))
    return str(path)


@pytest.fixture(scope="module")
def done(tmp_path_factory, text):
    out = tmp_path_factory.mktemp("compare")
    logs = []
    result = compare(select("gpt,mamba,bert"), CompareConfig(data=text, **TINY), out / "run", doc=out / "docs" /
                     "choosing.md", log=logs.append)
    return out, result, logs


def test_tiny_comparison_writes_the_table_csv_json_and_plots(done, text):
    out, result, logs = done
    run = out / "run"
    page = (run / "choosing-an-architecture.md").read_text()
    for label in ("GPT (decoder-only)", "Mamba (selective SSM)", "BERT (encoder-only)"):
        assert page.count(f"| {label} |") == 2  # the guide's table and the figures' table
    assert "| architecture | best for (the usual claim) | measured advantage (this run) | typical uses |" in page
    assert "the reference row" in page
    rows = list(csv.DictReader(open(run / "compare.csv")))
    assert [r["key"] for r in rows] == ["gpt", "mamba", "bert"]
    for r in rows:
        assert math.isfinite(float(r["val_loss"])) and float(r["train_tokens_per_s"]) > 0 and not r["error"]
        # every row spent the budget, to within one step
        per_step = float(r["flops_per_token"]) * TINY["batch_size"] * TINY["context"]
        assert abs(float(r["train_flops"]) - TINY["budget"]) <= per_step / 2 + 1
    by = {r["key"]: r for r in rows}
    assert by["bert"]["objective"] == "mlm" and by["bert"]["recall_accuracy"] == ""  # encoders: no next token
    assert by["bert"]["decode_tokens_per_s_64"] == "" and "(mlm)" in page
    assert float(by["mamba"]["state_bytes_per_context_token"]) == 0  # a recurrent state: flat in context
    assert float(by["gpt"]["state_bytes_per_context_token"]) > 0  # a KV cache grows
    assert float(by["gpt"]["state_mib_64"]) > float(by["gpt"]["state_mib_16"])
    assert by["gpt"]["decode_ms_per_1k_context"] != "" and by["bert"]["decode_ms_per_1k_context"] == ""
    assert "Decode state flat in context (the same bytes at 16 and 64 tokens): Mamba." in page
    assert f"Every architecture trained on `{text}` with the same compute" in page  # said the embedded corpus
    # GPT trained again at seeds 1 and 2 (its loss only): the page states the seed noise
    assert sorted(p.name for p in (run / "results").iterdir()) == ["bert.json", "gpt-seed1.json", "gpt-seed2.json",
                                                                   "gpt.json", "mamba.json"]
    assert "- Seed noise: GPT's validation loss at seeds 0, 1, 2 is " in page
    data = json.loads((run / "compare.json").read_text())
    assert data["rows"] == json.loads(json.dumps(result["rows"])) and data["meta"]["budget"] == TINY["budget"]
    for png in ("loss-vs-compute.png", "decode-vs-context.png", "synthetic.png"):
        assert (run / png).read_bytes()[:4] == PNG
    # the page for docs/: its plots under figures/, its data beside it, the links relative to it
    doc = (out / "docs" / "choosing.md").read_text()
    assert "![loss vs compute](figures/choosing-loss-vs-compute.png)" in doc and "[CSV](choosing.csv)" in doc
    assert (out / "docs" / "figures" / "choosing-decode-vs-context.png").read_bytes()[:4] == PNG
    assert (out / "docs" / "choosing.csv").read_text() == (run / "compare.csv").read_text()


def test_a_second_run_resumes_and_retrains_only_what_is_missing(done, text, monkeypatch):
    out, result, _ = done
    run = out / "run"
    (run / "results" / "mamba.json").unlink()
    trained = []
    real = quality.train_lm

    def spy(entry, *a, **k):
        trained.append(entry.key)
        return real(entry, *a, **k)

    monkeypatch.setattr("llmarch.compare.run.train_lm", spy)
    logs = []
    again = compare(select("gpt,mamba,bert"), CompareConfig(data=text, **TINY), run, log=logs.append)
    assert trained == ["mamba"]  # not GPT's seed runs either
    assert any("gpt: done before" in m for m in logs) and not any(m.startswith("speed:") for m in logs)
    assert [r["val_loss"] for r in again["rows"]][::2] == [r["val_loss"] for r in result["rows"]][::2]
    with pytest.raises(LlmarchError, match="other settings \\(budget\\)"):
        compare(select("gpt"), CompareConfig(data=text, **{**TINY, "budget": 2e8}), run, log=logs.append)


def test_a_failed_family_is_reported_in_its_row_and_the_others_go_on(tmp_path, text, monkeypatch):
    real = quality.train_lm

    def broken(entry, *a, **k):
        if entry.key == "mamba":
            raise RuntimeError("scan exploded\nsecond line")
        return real(entry, *a, **k)

    monkeypatch.setattr("llmarch.compare.run.train_lm", broken)
    cc = CompareConfig(data=text, **{**TINY, "synthetic_budget": 0, "noise_seeds": 1})
    done = compare(select("gpt,mamba"), cc, tmp_path, log=lambda m: None)
    gpt, mamba = done["rows"]
    assert gpt["val_loss"] is not None and gpt["error"] is None
    assert mamba["error"] == "RuntimeError: scan exploded" and mamba["val_loss"] is None
    page = (tmp_path / "choosing-an-architecture.md").read_text()
    assert "failed: RuntimeError: scan exploded" in page


def test_every_default_family_is_sized_to_the_reference_compute():
    shape = Shape()
    target = reference_flops(shape)
    for entry in ENTRIES:
        cfg = sized(entry, shape, target)
        assert cfg.d_model == shape.d_model and cfg.vocab_size == shape.vocab_size
        assert abs(math.log(flops_per_token(cfg) / target)) < math.log(1.25), entry.key
        steps = steps_for(cfg, 3e12, shape)
        assert abs(steps * flops_per_token(cfg) * 16 * 256 - 3e12) <= flops_per_token(cfg) * 16 * 256 / 2 + 1
    mamba = sized(select("mamba")[0], shape, target)
    assert mamba.n_layers > 2 * shape.depth  # a Mamba block has no FFN: about twice the blocks at equal FLOPs
    narrow = Shape(d_model=96)  # a width the presets' head counts do not halve evenly: the heads still group
    for entry in ENTRIES:
        cfg = sized(entry, narrow, reference_flops(narrow))
        assert cfg.n_heads % cfg.n_kv_heads == 0, entry.key


def _row(key, label, **figures):
    row = dict(key=key, label=label, objective="clm", parameters=100, active_parameters=100, val_loss=3.0,
               recall_accuracy=0.5, copy_accuracy=0.5, train_tokens_per_s=1000.0, train_peak_mib=100.0,
               prefill_tokens_per_s=1000.0, decode_tokens_per_s_64=100.0, state_mib_16=1.0, state_mib_64=4.0,
               state_bytes_per_context_token=4096.0, decode_slowdown=2.0, decode_ms_per_1k_context=0.5, error=None)
    row.update(figures)
    return row


def test_the_measured_advantage_follows_from_the_numbers():
    ref = _row("gpt", "GPT (decoder-only)")
    assert measured_advantage(ref, ref, [16, 64]) == "the reference row"
    same = _row("llama", "LLaMA", val_loss=2.99, train_tokens_per_s=1050.0)  # within noise: no claim
    assert measured_advantage(same, ref, [16, 64]) == "none over GPT at this budget"
    ssm = _row("mamba", "Mamba", state_mib_16=0.5, state_mib_64=0.5, state_bytes_per_context_token=0.0,
               val_loss=3.1, decode_tokens_per_s_64=150.0)
    text = measured_advantage(ssm, ref, [16, 64])
    assert text.startswith("8x smaller decode state at 64 tokens (0.5 vs 4 MiB), flat in context; 1.5x decode speed")
    solved = _row("x", "X", copy_accuracy=0.7, recall_accuracy=0.3, state_mib_64=4.0)
    unsolved = [p for _, p in advantages(_row("y", "Y", recall_accuracy=0.45), _row("g", "G", recall_accuracy=0.1),
                                         [16, 64])]
    assert [p for _, p in advantages(solved, ref, [16, 64])] == ["copy accuracy 70% vs 50%"]
    assert unsolved == []  # 45% against 10%: better at a task neither solves is not an advantage
    moe = _row("moe", "MoE", parameters=300, active_parameters=100, val_loss=2.9)
    found = [p for _, p in advantages(moe, ref, [16, 64])]
    assert found == ["3.0x the parameters for the compute per token (300 total, 100 active)",
                     "lower loss at equal compute (2.900 vs 3.000)"]
    bert = _row("bert", "BERT", objective="mlm", val_loss=1.0)  # another objective's loss is never a win
    assert not any("loss" in p for _, p in advantages(bert, ref, [16, 64]))
    assert not any("loss" in p for _, p in advantages(moe, ref, [16, 64], noise=0.2))  # within the seed noise
    assert loss_noise({"reference_seed_losses": {"0": 3.0, "1": 3.3}}) == pytest.approx(0.3)
    assert loss_noise({"reference_seed_losses": {"0": 3.0}}) == 0.05
    said = statements([ref, ssm, moe, bert], [16, 64], {"recall": 4, "copy": 8})
    assert "Lowest next-token loss at equal compute: MoE (2.900); highest: Mamba (3.100); the spread is 0.200 nats." \
        in said
    assert "Decode state flat in context (the same bytes at 16 and 64 tokens): Mamba." in said
    assert "Associative recall (chance: 25% per answer token): every model at 50%; none reached 90%." in said


@pytest.mark.parametrize("argv, message", [
    (["--families", "gpt,nope"], "unknown family nope for --families; choose from: gpt, llama"),
    (["--families", "gpt,gpt"], "--families names a family twice"),
    (["--lengths", "1k"], "--lengths must be positive integers"),
    (["--budget", "0"], "budget must be positive"),
    (["--doc", "page.txt"], "--doc page.txt: the page is a markdown file"),
])
def test_bad_input_is_one_line(tmp_path, capsys, argv, message):
    assert main(["compare", "--out", str(tmp_path / "o"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()  # nothing written before the input is checked
