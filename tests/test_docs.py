"""Every code example in README.md and docs/ runs: ```python blocks are executed, ```bash blocks are run
by bash in a scratch directory. The README's `make` lines are the set-up commands themselves (CI runs
`make test` through .ci/run), so they are the only lines left out."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"```(python|bash)\n(.*?)```", re.S)


def blocks():
    for page in PAGES:
        for i, (lang, code) in enumerate(BLOCK.findall(page.read_text())):
            yield pytest.param(lang, code, id=f"{page.relative_to(ROOT)}#{i}-{lang}")


def test_docs_have_examples():
    assert len(list(blocks())) >= 6


@pytest.mark.parametrize("lang, code", list(blocks()))
def test_example_runs(lang, code, tmp_path):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if lang == "python":
        proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    else:
        script = "\n".join(line for line in code.splitlines() if not line.startswith("make "))
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                              capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
