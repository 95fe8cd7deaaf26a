"""Every code example in README.md and docs/ runs: ```python blocks are executed, ```bash blocks are run
by bash in a scratch directory. The README's `make` lines are the set-up commands themselves (CI runs
`make test` through .ci/run), so they are the only lines left out.

A python block runs in a process of its own, forked from a server that imported torch and llmarch once (as a
fresh `python -c` would have them, and nothing else of the test session's): the imports took about 1.5 s of each
of the 135 examples, a minute and more of the suite on two cores."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# reads a JSON line [code file, directory, output file]; forks; the child runs the code there with stdout and
# stderr in the output file; answers with the child's exit code
SERVER = r"""
import json, os, sys, traceback
import torch, llmarch  # noqa: F401
while True:
    line = sys.stdin.readline()
    if not line:
        break
    code_path, cwd, out_path = json.loads(line)
    pid = os.fork()
    if pid == 0:
        fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.chdir(cwd)
        code = 0
        try:
            exec(compile(open(code_path).read(), "<example>", "exec"), {"__name__": "__main__"})
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), flush=True)
"""

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"```(python|bash)\n(.*?)```", re.S)


def blocks():
    for page in PAGES:
        for i, (lang, code) in enumerate(BLOCK.findall(page.read_text())):
            yield pytest.param(lang, code, id=f"{page.relative_to(ROOT)}#{i}-{lang}")


def test_docs_have_examples():
    assert len(list(blocks())) >= 6


def _env() -> dict:
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


@pytest.fixture(scope="module")
def forks():
    """Runs python code in a fork of the server: (code, directory) -> (exit code, output)."""
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              env=_env(), text=True)

    def run(code: str, tmp: Path) -> tuple[int, str]:
        """The code (in tmp) run in tmp/work, an empty directory as a fresh `python -c` would have had."""
        (tmp / "work").mkdir()
        (tmp / "example.py").write_text(code)
        server.stdin.write(json.dumps([str(tmp / "example.py"), str(tmp / "work"), str(tmp / "example.out")]) + "\n")
        server.stdin.flush()
        return int(server.stdout.readline()), (tmp / "example.out").read_text()
    yield run
    server.stdin.close()
    server.wait()


@pytest.mark.parametrize("lang, code", list(blocks()))
def test_example_runs(lang, code, tmp_path, forks):
    if lang == "python":
        returncode, output = forks(code, tmp_path)
        assert returncode == 0, output[-2000:]
        return
    script = "\n".join(line for line in code.splitlines() if not line.startswith("make "))
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
