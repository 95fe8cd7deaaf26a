"""Every code example in README.md and docs/ runs: ```python blocks are executed, ```bash blocks are run
by bash in a scratch directory. The README's `make` lines are the set-up commands themselves (CI runs
`make test` through .ci/run), so they are the only lines left out.

A python block runs in a process of its own, forked from a server that imported torch and llmarch once (as a
fresh `python -c` would have them, and nothing else of the test session's): the imports took about 1.5 s of each
of the 135 examples, a minute and more of the suite on two cores. The server imports transformers too, which 38
of the 193 examples import to compare with (1.2 s of CPU each). Likewise `llmarch` in a bash block is a stand-in
on PATH (SHIM) that hands its arguments, directory, environment and its stdin, stdout and stderr (the descriptors
themselves) to a server that imported torch and llmarch once (CLI_SERVER); a fork of it runs llmarch.cli.main as
the installed `llmarch` script does, and the stand-in exits with its exit code, passing on the signals it gets
(`kill $SERVER`). The 76 commands had started torch again each, two seconds of CPU apiece. That server also
imports torch._dynamo (torch's optimizers import it when the first is made) and matplotlib's pyplot (the loss
plot): 1.5 s of CPU that each of the 30 or so training commands paid in its fork.

Both servers import ahead what the forks would import alike: `import transformers` alone is lazy (the first model
class brought modeling_utils, 2 s of CPU in each of the 38 examples that compare with it), a model built on the meta
device brings torch._dynamo (through torch's normal_), and the commands' own modules and their parser (whose help
reads the configs' source) cost a command about 0.9 s. The whole module: 172 s -> 92 s on two cores."""
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
import gc, json, os, sys, traceback
import torch, llmarch  # noqa: F401
import torch._dynamo  # noqa: F401 (torch's meta-device normal_ imports it: every llmarch.build(device="meta"))
# transformers imports lazily: its package alone is cheap, the first model class brings modeling_utils and with it
# torch.distributed.tensor, masking and generation (2 s of CPU, paid by each of the 38 examples that compare with it)
import transformers, transformers.modeling_utils, transformers.generation  # noqa: F401
# what is imported so far, out of the cyclic collector's reach: a fork's collections walked (and wrote to) the
# millions of objects of torch and transformers again; an example that builds a transformers model and reads it
# with from_hf took 1.5 s of CPU in its fork, 0.45 s with them frozen
gc.freeze()
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

# listens on the socket named by argv[1]; a connection brings [argv, cwd, environ] and the caller's descriptors
# 0, 1 and 2; a fork takes them over, answers with its pid, runs `llmarch argv` and answers with its exit code
CLI_SERVER = r"""
import gc, json, os, signal, socket, sys, traceback
import torch, llmarch.cli  # noqa: F401
import torch._dynamo, matplotlib.pyplot  # noqa: F401 (what each `llmarch train` imports: its optimizer, its plot)
# what the commands import when they run (training, decoding, checkpoints, GGUF, analysis, scaling laws), and the
# parser once: its options' help reads the configs' source (field_docs, cached), a third of a second each command
import llmarch.train.finetune, llmarch.train.synthetic, llmarch.train.launch, llmarch.generate, llmarch.interop  # noqa
import llmarch.analysis, llmarch.scaling.sweep, llmarch.scaling.plots, llmarch.quant  # noqa: F401
llmarch.cli.build_parser()
listener = socket.socket(socket.AF_UNIX)
listener.bind(sys.argv[1])
listener.listen(16)


def reap(*_):  # waited for, so that their CPU time counts as this process' children's (SIG_IGN drops it)
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


signal.signal(signal.SIGCHLD, reap)
gc.freeze()  # as SERVER's
print("ready", flush=True)
while True:
    conn, _ = listener.accept()
    if os.fork():
        conn.close()
        continue
    listener.close()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    msg, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
    while not msg.endswith(b"\n"):
        msg += conn.recv(1 << 16)
    argv, cwd, env = json.loads(msg)
    for i, fd in enumerate(fds):
        os.dup2(fd, i)
        os.close(fd)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = ["llmarch", *argv]
    conn.sendall(b"%d\n" % os.getpid())
    try:
        code = llmarch.cli.main(argv)
    except SystemExit as e:  # as the interpreter ends on sys.exit(e.code)
        code = e.code if isinstance(e.code, int) else 0 if e.code is None else print(e.code, file=sys.stderr) or 1
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    conn.sendall(b"%d\n" % code)
    os._exit(code)
"""

# `llmarch` on the bash blocks' PATH: a python without site-packages (milliseconds to start)
SHIM = r"""
import json, os, signal, socket, sys
conn = socket.socket(socket.AF_UNIX)
conn.connect(os.environ["LLMARCH_DOCS_CLI"])
socket.send_fds(conn, [json.dumps([sys.argv[1:], os.getcwd(), dict(os.environ)]).encode() + b"\n"], [0, 1, 2])
answers = conn.makefile()
child = int(answers.readline())
for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(sig, lambda s, frame: os.kill(child, s))
code = answers.readline()
sys.exit(int(code) if code else 1)  # no code: the command was killed
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


@pytest.fixture(scope="module")
def bash_env(tmp_path_factory):
    """The environment of the bash blocks: `llmarch` is SHIM, served by CLI_SERVER."""
    folder = tmp_path_factory.mktemp("cli")
    (folder / "bin").mkdir()
    shim = folder / "bin" / "llmarch"
    shim.write_text(f"#!{sys.executable} -S\n{SHIM}")
    shim.chmod(0o755)
    server = subprocess.Popen([sys.executable, "-c", CLI_SERVER, str(folder / "sock")], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, env=_env(), text=True)
    assert server.stdout.readline() == "ready\n"
    env = _env()
    yield {**env, "PATH": f"{folder / 'bin'}{os.pathsep}{env['PATH']}", "LLMARCH_DOCS_CLI": str(folder / "sock")}
    server.kill()
    server.wait()


@pytest.mark.parametrize("lang, code", list(blocks()))
def test_example_runs(lang, code, tmp_path, forks, bash_env):
    if lang == "python":
        returncode, output = forks(code, tmp_path)
        assert returncode == 0, output[-2000:]
        return
    script = "\n".join(line for line in code.splitlines() if not line.startswith("make "))
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=bash_env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
