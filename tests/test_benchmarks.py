import json
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_cpu_benchmark_runs_and_reports(tmp_path, monkeypatch):
    """A smoke run with small shapes: the script works and its greedy outputs agree with transformers.
    The speed figures themselves live in docs/benchmarks.md, not in assertions."""
    import torch

    out = tmp_path / "bench.json"
    # in this process, at its torch threads: a second interpreter spent 4 s of CPU importing torch and transformers
    monkeypatch.setattr(sys, "argv", ["cpu_vs_transformers.py", "--batch-size", "2", "--context", "32", "--new-tokens",
                                      "8", "--repeats", "1", "--threads", str(torch.get_num_threads()), "--out",
                                      str(out)])
    runpy.run_path(str(ROOT / "benchmarks" / "cpu_vs_transformers.py"), run_name="__main__")
    results = json.loads(out.read_text())
    assert results["generate_tokens_per_s"]["same_tokens"] is True
    assert results["train_tokens_per_s"]["llmarch"] > 0


def test_speculative_benchmark_runs_and_reports(tmp_path, monkeypatch, capsys):
    """benchmarks/speculative.py on two tiny random checkpoints: it times the contenders and greedy output with a
    draft is the target's own."""
    import torch

    from llmarch.checkpoint import save_model
    from llmarch.data.tokenizer import ByteTokenizer
    from llmarch.models import TransformerLM
    from llmarch.presets import resolve

    for name, layers in (("target", 2), ("draft", 1)):
        torch.manual_seed(layers)
        save_model(TransformerLM(resolve("llama-tiny", vocab_size=257, d_model=32, n_layers=layers, n_heads=2,
                                         n_kv_heads=1, ffn_hidden=64, context_length=64)), tmp_path / name)
        ByteTokenizer().save(tmp_path / name)
    out = tmp_path / "bench.json"
    threads = torch.get_num_threads()
    # in this process: a second interpreter would spend seconds importing torch
    monkeypatch.setattr(sys, "argv", ["speculative.py", "--target", str(tmp_path / "target"), "--draft",
                                      str(tmp_path / "draft"), "--new-tokens", "6", "--repeats", "1",
                                      "--num-draft", "1,3", "--threads", str(threads), "--out", str(out)])
    runpy.run_path(str(ROOT / "benchmarks" / "speculative.py"), run_name="__main__")
    results = json.loads(out.read_text())
    assert results["same_tokens"] is True and [r["num_draft"] for r in results["rows"]] == [1, 3]
    assert all(r["speedup"] > 0 and 0 <= r["accepted_share"] <= 1 for r in results["rows"])


def test_speculative_benchmark_distils_a_draft(tmp_path, monkeypatch):
    """A recipe with a teacher: the target's greedy continuations of corpus windows become a .jsonl of the ids it
    chose, and the draft trains on them with the target's tokenizer."""
    import importlib.util

    import torch

    from llmarch.checkpoint import save_model
    from llmarch.data.tokenizer import ByteTokenizer
    from llmarch.generate import generate
    from llmarch.models import TransformerLM
    from llmarch.presets import resolve

    spec = importlib.util.spec_from_file_location("speculative_bench", ROOT / "benchmarks" / "speculative.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    shape = dict(vocab_size=257, n_heads=2, n_kv_heads=1, context_length=64)
    torch.manual_seed(0)
    target = TransformerLM(resolve("llama-tiny", d_model=32, n_layers=2, ffn_hidden=64, **shape))
    save_model(target, tmp_path / "t")
    ByteTokenizer().save(tmp_path / "t")
    draft_args = ["--model", "llama-tiny", "--n-layers", "1", "--d-model", "16", "--n-heads", "2", "--n-kv-heads",
                  "1", "--ffn-hidden", "32", "--vocab-size", "257", "--context-length", "8", "--steps", "2",
                  "--batch-size", "2", "--eval-every", "2", "--eval-tokens", "64"]
    monkeypatch.setattr(bench, "RECIPES", {"d": (draft_args, "t")})
    for name, value in dict(TEXT_ROWS=6, TEXT_PROMPT=8, TEXT_NEW=40, TEXT_BATCH=3).items():
        monkeypatch.setattr(bench, name, value)
    bench.ensure(str(tmp_path / "d"), torch.get_num_threads())
    rows = [json.loads(line)["ids"] for line in (tmp_path / "t-tokens.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(len(r) == 48 for r in rows)
    assert generate(target, [rows[0][:8]], 40) == [rows[0]]  # a window of the corpus, then the target's tokens
    assert (tmp_path / "d" / "latest").is_file()


def test_quant_benchmark_times_each_contender_for_decode_and_end_to_end(tmp_path, monkeypatch, capsys):
    """benchmarks/quant.py --speed on a tiny random checkpoint (no llama.cpp): every variant gets decode-only and
    end-to-end rates from its two calls a round, and speed-ups against fp32 for both."""
    import torch

    from llmarch.checkpoint import save_model
    from llmarch.data.tokenizer import ByteTokenizer
    from llmarch.models import TransformerLM
    from llmarch.presets import resolve

    torch.manual_seed(0)
    save_model(TransformerLM(resolve("llama-tiny", vocab_size=257, d_model=64, n_layers=1, n_heads=2, n_kv_heads=1,
                                     ffn_hidden=128, context_length=64)), tmp_path / "m")
    ByteTokenizer().save(tmp_path / "m")
    monkeypatch.setattr(sys, "argv", ["quant.py", "--checkpoint", str(tmp_path / "m"), "--group-size", "32",
                                      "--methods", "int8,int4", "--speed", "--prompt-tokens", "16",
                                      "--new-tokens", "40", "--repeats", "3",
                                      "--threads", str(torch.get_num_threads())])
    runpy.run_path(str(ROOT / "benchmarks" / "quant.py"), run_name="__main__")
    # decode rates come from (prompt + 40 tokens) - (prompt + 1 token) a round, medians of 3: with 6 tokens and one
    # round, a loaded machine (the full suite on 2 cores) once made that difference negative
    decode = json.loads(capsys.readouterr().out)["decode"]
    assert set(decode) == {"fp32", "int8", "int4"}
    for row in decode.values():
        assert row["decode_tokens_per_s"] > 0 and row["end_to_end_tokens_per_s"] > 0 and row["prompt_seconds"] > 0
        assert set(row["speedup_vs_fp32"]) == {"decode", "end_to_end"}
    assert decode["fp32"]["greedy_tokens_equal_fp32"] is True
    tie = decode["fp32"]["smallest_top2_margin"]
    assert 0 <= tie["new_token"] < 40 and tie["margin"] >= 0


def test_quant_kernels_benchmark_times_each_path(tmp_path, monkeypatch):
    """benchmarks/quant_kernels.py (the device's weight-only paths against bf16, for gpu.sh) at a small shape on
    the CPU: every path timed, the int4 layer on the CPU kernel's tiles."""
    out = tmp_path / "k.json"
    monkeypatch.setattr(sys, "argv", ["quant_kernels.py", "--device", "cpu", "--shapes", "1x64x256", "--repeats", "1",
                                      "--calls", "2", "--out", str(out)])
    runpy.run_path(str(ROOT / "benchmarks" / "quant_kernels.py"), run_name="__main__")
    (shape,) = json.loads(out.read_text())["shapes"]
    assert shape["int4_tiles"] == "cpu" and shape["speedup_vs_bf16"]["bf16"] == 1.0
    assert set(shape["ms"]) == {"bf16", "int8 cast", "int8 cast compiled", "int8 kernel", "int4"}
    assert all(ms > 0 for ms in shape["ms"].values())
