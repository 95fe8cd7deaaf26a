import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_cpu_benchmark_runs_and_reports(tmp_path):
    """A smoke run with small shapes: the script works and its greedy outputs agree with transformers.
    The speed figures themselves live in docs/benchmarks.md, not in assertions."""
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cpu_vs_transformers.py"), "--batch-size", "2",
                           "--context", "32", "--new-tokens", "8", "--repeats", "1", "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["generate_tokens_per_s"]["same_tokens"] is True
    assert results["train_tokens_per_s"]["llmarch"] > 0
