"""Fuzzing the CLI: random and boundary values for every option of every command that takes a value, bogus
choices, missing and unreadable files, and checkpoints whose config.json, model.safetensors or tokenizer.json
were truncated or had bytes flipped. Whatever the input, no traceback reaches the user: `llmarch` exits 0 or 2,
and its stderr holds no "Traceback". Seeded; commands run in this process (llmarch.cli.main) on a tiny
checkpoint. The commands that train or benchmark stop where their work would begin (after every check of their
input); the rest run whole."""
import argparse
import json
import random
import shutil
import traceback
from pathlib import Path

import pytest
import torch

import llmarch
import llmarch.cli
from llmarch.checkpoint import save_model
from llmarch.cli import build_parser, main
from llmarch.errors import LlmarchError

SEED = 21
INTS = ["-1", "0", "1", "2", "3", "17", "4096", "-99999999999999999999", "99999999999999999999", "2.5", "x", ""]
FLOATS = ["-1", "0", "1e-9", "0.5", "1", "2", "1e308", "-1e30", "nan", "inf", "-inf", "x", ""]
BOOLS = ["true", "no", "maybe"]
STRS = ["bogus", "", "-"]
# per option, how many of those values a run tries (boundaries first, then a seeded sample): the whole test
# stays well under half a minute of CPU
PER_OPTION = 10
# values that are valid and only cost memory: 4096 beams of a cache is the machine's limit, not bad input
SMALL_ONLY = {"--num-beams"}
TEXT = "def main():\n    return sum(range(10))  # a line of ordinary code\n" * 30


class Stopped(LlmarchError):
    """Where a stubbed command's work would begin: every check of its input has passed."""


def stop(*args, **kwargs):
    raise Stopped("stopped before the work (fuzz test)")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny checkpoint with a small BPE tokenizer (so that tokenizer.json is a real one), text, labeled
    examples, a sweep CSV, and the bad files: missing, a directory, empty, binary garbage."""
    from llmarch.data import train_bpe

    root = tmp_path_factory.mktemp("fuzz")
    tok = train_bpe([TEXT], vocab_size=300)
    torch.manual_seed(0)
    save_model(llmarch.build("gpt-tiny", vocab_size=300, n_layers=1, d_model=32, n_heads=2, context_length=32),
               root / "lm")
    tok.save(root / "lm")
    (root / "text.txt").write_text(TEXT)
    (root / "labeled.jsonl").write_text("".join(json.dumps({"text": f"{w} {i}", "label": w}) + "\n"
                                                for i in range(20) for w in ("yes", "no")))
    shutil.copy(Path(__file__).parents[1] / "docs" / "scaling-sweep-cpu.csv", root / "sweep.csv")
    (root / "empty").write_text("")
    (root / "garbage").write_bytes(b"\x00\xff" + bytes(random.Random(SEED).randrange(256) for _ in range(300)))
    (root / "folder").mkdir()
    return root


@pytest.fixture
def cli(capsys, monkeypatch):
    """run(argv): `llmarch argv` in this process; fails the test on an exception out of main (a traceback the
    user would see), an exit code other than 0 or 2, or a traceback on stderr. One parser serves every call."""
    parser = build_parser()
    monkeypatch.setattr(llmarch.cli, "build_parser", lambda: parser)

    threads = torch.get_num_threads()

    def run(argv):
        argv = [str(a) for a in argv]
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
        except BaseException:
            pytest.fail(f"llmarch {' '.join(argv)!r} raised:\n{traceback.format_exc()}")
        finally:
            torch.set_num_threads(threads)  # bench --threads sets this process' count
        err = capsys.readouterr().err
        assert code in (0, 2), (argv, code, err)
        assert "Traceback" not in err, (argv, err)
        return code, err

    return run


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def _values(action, rng: random.Random) -> list[str]:
    """The values tried for one option: boundaries and a seeded sample of the rest."""
    if action.choices:
        return ["bogus", *rng.sample([str(c) for c in action.choices], 1)]
    kind = getattr(action.type, "__name__", "") if action.type else ""
    pool = {"BOOL": BOOLS, "STR": STRS}.get(action.metavar or "")
    if pool is None:
        pool = FLOATS if kind in ("float", "finite") or action.type is float else INTS
    if action.option_strings[0] in SMALL_ONLY:
        pool = [v for v in pool if v not in ("4096", "99999999999999999999")]
    first = [v for v in pool if v in ("-1", "0", "nan", "x", "maybe", "bogus")]
    rest = [v for v in pool if v not in first]
    return first + rng.sample(rest, min(len(rest), max(0, PER_OPTION - len(first))))


def _bases(files, tmp: Path) -> dict[tuple[str, ...], list]:
    """A valid, cheap command line per command (or command path); an option's value is appended to it."""
    lm = files / "lm"
    return {
        ("generate",): ["generate", "--checkpoint", lm, "--prompt", "hi", "--max-new-tokens", "2"],
        ("eval",): ["eval", "--checkpoint", lm, "--data", files / "text.txt", "--max-tokens", "64"],
        ("embed",): ["embed", "--checkpoint", lm, "--input", files / "text.txt"],  # + a new --out each time
        ("train",): ["train", "--model", "gpt-tiny", "--out", tmp / "run", "--data", files / "text.txt",
                     "--tokenizer", "byte", "--vocab-size", "257"],
        ("finetune",): ["finetune", "--checkpoint", lm, "--data", files / "labeled.jsonl", "--out", tmp / "ft"],
        ("synthetic",): ["synthetic", "recall"],
        ("bench",): ["bench"],
        ("info",): ["info", "gpt-tiny"],
        ("analyze",): ["analyze", "--checkpoint", lm, "--prompt", "def main", "--out", tmp / "plots"],
        ("scaling", "fit"): ["scaling", "fit", files / "sweep.csv"],
        ("scaling", "optimal"): ["scaling", "optimal", "--flops", "1e18", "--fit", files / "sweep.csv"],
        ("scaling", "sweep"): ["scaling", "sweep", "--model", "gpt-tiny", "--sizes", "32x1", "--tokens", "1e3",
                               "--out", tmp / "sweep"],
    }


def _stub_the_work(monkeypatch) -> None:
    """Training (in this process or --nproc's), benchmarks and the model-facts arithmetic of `info` (whose cost grows with n_layers) stop
    where they would begin; the scaling-law fit (seconds) is Chinchilla's published one (Hoffmann et al. 2022,
    eq. 10), so that `scaling optimal` still computes with each --flops."""
    from llmarch.scaling.fit import ChinchillaFit

    monkeypatch.setattr("llmarch.scaling.fit_chinchilla", lambda *a: ChinchillaFit(1.69, 406.4, 410.7, 0.34, 0.28))
    for target in ("llmarch.train.loop.run", "llmarch.train.launch.launch", "llmarch.train.finetune.run",
                   "llmarch.train.synthetic.run", "llmarch.scaling.sweep.sweep", "llmarch.analysis.model_facts",
                   "llmarch.bench.model.parse_device", "llmarch.bench.attention.parse_device",
                   "llmarch.bench.context.parse_device"):
        monkeypatch.setattr(target, stop)


def test_every_option_with_random_and_boundary_values(files, tmp_path, cli, monkeypatch):
    _stub_the_work(monkeypatch)
    rng = random.Random(SEED)
    bases = _bases(files, tmp_path)
    model_fields = {"--" + f.name.replace("_", "-") for f in __import__("dataclasses").fields(llmarch.ModelConfig)}
    tried = 0
    for name, sub in _subparsers(build_parser()).items():
        for path, parser in [((name,), sub)] + [((name, n), p) for n, p in _subparsers(sub).items()]:
            if path not in bases:
                continue
            options = [a for a in parser._actions if a.option_strings and a.nargs is None and a.dest != "help"
                       and (a.type is not None or a.choices)]
            if name != "info":  # the model's fields in full once (info), a sample of them elsewhere
                overrides = [a for a in options if a.option_strings[0] in model_fields]
                keep = set(map(id, rng.sample(overrides, min(8, len(overrides)))))
                options = [a for a in options if a.option_strings[0] not in model_fields or id(a) in keep]
            for action in options:
                flag = action.option_strings[0]
                base = list(bases[path])
                if name == "bench" and flag.startswith(("--attn-", "--ctx-")):
                    base.append("attention" if flag.startswith("--attn-") else "decode-context")
                for value in _values(action, rng):
                    extra = ["--out", tmp_path / f"e{tried}.npy"] if name == "embed" else []
                    cli(base + extra + [f"{flag}={value}"])  # --x=value: a value may begin with "-"
                    tried += 1
    assert tried > 500


@pytest.mark.parametrize("bad", ["missing", "folder", "empty", "garbage"])
def test_missing_and_unreadable_files(files, tmp_path, cli, monkeypatch, bad):
    _stub_the_work(monkeypatch)
    lm, path = files / "lm", files / bad
    config = tmp_path / f"{bad}.json"
    if bad != "missing":
        (shutil.copytree if bad == "folder" else shutil.copy)(path, config)
    for argv in (
        ["generate", "--checkpoint", path, "--prompt", "hi"],
        ["eval", "--checkpoint", path],
        ["eval", "--checkpoint", lm, "--data", path],
        ["embed", "--checkpoint", lm, "--input", path, "--out", tmp_path / "e.npy"],
        ["analyze", "--checkpoint", path, "--prompt", "hi", "--out", tmp_path / "a"],
        ["info", config],
        ["train", "--model", config, "--out", tmp_path / "run"],
        ["finetune", "--checkpoint", lm, "--data", path, "--out", tmp_path / "ft"],
        ["finetune", "--checkpoint", path, "--out", tmp_path / "ft"],
        ["scaling", "fit", path],
        ["scaling", "optimal", "--flops", "1e18", "--fit", path],
        ["convert", "--from-hf", path, "--out", tmp_path / "c"],
    ):
        assert cli(argv)[0] == 2


def _mutations(data: bytes, rng: random.Random, n: int) -> list[bytes]:
    """n damaged copies: cut at a random length, or 1 to 4 bytes XORed with a random non-zero byte."""
    out = []
    for i in range(n):
        if i % 3 == 0:
            out.append(data[:rng.randrange(len(data))])
        else:
            b = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                b[rng.randrange(len(b))] ^= rng.randrange(1, 256)
            out.append(bytes(b))
    return out


@pytest.mark.parametrize("name, n", [("config.json", 40), ("model.safetensors", 40), ("tokenizer.json", 30)])
def test_mutated_checkpoint_files(files, tmp_path, cli, name, n):
    rng = random.Random(f"{SEED}-{name}")
    original = (files / "lm" / name).read_bytes()
    codes = []
    for i, data in enumerate(_mutations(original, rng, n)):
        ckpt = tmp_path / f"m{i}"
        shutil.copytree(files / "lm", ckpt)
        (ckpt / name).write_bytes(data)
        codes.append(cli(["generate", "--checkpoint", ckpt, "--prompt", "def", "--max-new-tokens", "2",
                          "--seed", "0"])[0])
        if i % 4 == 0:
            codes.append(cli(["eval", "--checkpoint", ckpt, "--data", files / "text.txt", "--max-tokens", "32"])[0])
    assert 2 in codes  # the damage was found, not just survived
