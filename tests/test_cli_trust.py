"""Nothing silently wrong, no tracebacks: each input that used to print a traceback or give a wrong answer with
exit 0 is now a one-line error naming the value (exit 2), or runs with a one-line warning saying what changed.
Commands run in this process (llmarch.cli.main) on a tiny checkpoint built here."""
import argparse
import json
import re

import pytest
import torch

import llmarch
from llmarch.checkpoint import WEIGHTS, load_model, save_model
from llmarch.cli import build_parser, main
from llmarch.config import ModelConfig
from llmarch.data.tokenizer import ByteTokenizer
from llmarch.errors import LlmarchError, LlmarchWarning

TEXT = "def main():\n    return sum(range(10))  # a line of ordinary code\n" * 40


def call(capsys, *argv):
    """(exit code, stdout, stderr) of `llmarch argv`, with nothing but SystemExit allowed out of main."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def one_line_error(capsys, text, *argv):
    code, _, err = call(capsys, *argv)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert text in err, err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny decoder checkpoint (context 32, byte tokenizer), a classifier, a text file and a short one."""
    root = tmp_path_factory.mktemp("trust")
    torch.manual_seed(0)
    save_model(llmarch.build("gpt-tiny", vocab_size=257, n_layers=1, d_model=32, n_heads=2, context_length=32),
               root / "lm")
    ByteTokenizer().save(root / "lm")
    save_model(llmarch.build("bert-tiny", vocab_size=300, n_layers=1, d_model=32, n_heads=2, context_length=32,
                             head="classify"), root / "cls")
    ByteTokenizer(mask=True).save(root / "cls")
    (root / "text.txt").write_text(TEXT)
    (root / "short.txt").write_text("tiny file\n")
    (root / "a-file").write_text("not a directory")
    return root


def test_out_of_range_options_are_one_line_errors(files, capsys):
    lm, text = files / "lm", files / "text.txt"
    gen = ["generate", "--checkpoint", lm, "--prompt", "hi", "--max-new-tokens", "2"]
    ev = ["eval", "--checkpoint", lm, "--data", text]
    train = ["train", "--model", "gpt-tiny", "--steps", "1", "--data", text, "--tokenizer", "byte",
             "--vocab-size", "257", "--out", files / "run"]
    cases = [
        (gen + ["--top-p", "0"], "top_p must be in (0, 1]"),
        (gen + ["--top-p", "2"], "top_p must be in (0, 1]"),
        (gen + ["--top-k", "-1"], "--top-k: must be >= 0, got -1"),
        (gen + ["--temperature", "nan"], "--temperature: the value must be a finite number, got 'nan'"),
        (gen + ["--temperature", "-1"], "temperature must be >= 0"),
        (ev + ["--batch-size", "0"], "--batch-size: must be >= 1, got 0"),
        (ev + ["--max-tokens", "0"], "--max-tokens: must be >= 1, got 0"),
        (ev + ["--max-tokens", "-5"], "--max-tokens: must be >= 1, got -5"),
        (ev + ["--val-fraction", "1.5"], "--val-fraction must be in (0, 1], got 1.5"),
        (ev + ["--context", "33"], "--context 33 is longer than the model's context_length 32"),
        (ev + ["--device", "bogus"], "unknown device 'bogus'"),
        (["eval", "--checkpoint", files / "cls", "--data", text], "has a classify head"),
        (["embed", "--checkpoint", lm, "--input", text, "--out", files / "e.npy", "--batch-size", "0"],
         "--batch-size: must be >= 1, got 0"),
        (train + ["--lr", "nan"], "lr must be a finite number, got 'nan'"),
        (train + ["--lr", "-1"], "lr must be positive, got -1.0"),
        (train + ["--eval-tokens", "0"], "eval_tokens must be positive, got 0"),
        (train + ["--grad-clip", "0"], "grad_clip must be positive"),
        (train + ["--device", "bogus"], "unknown device 'bogus'"),
        (train[:-1] + [files / "a-file"], "--out " + str(files / "a-file") + " is a file"),
        (["synthetic", "recall", "--task-length", "100"], "--task-length is not an option of recall"),
    ]
    if not torch.cuda.is_available():
        cases.append((train + ["--device", "cuda"], "no CUDA GPU is available"))
    for argv, text in cases:
        one_line_error(capsys, text, *argv)


def test_unwritable_output_is_one_line_error(files, capsys, monkeypatch):
    """A read-only directory (root ignores permission bits, so os.access stands in for one), and an OSError
    from the machine at any later point."""
    monkeypatch.setattr("os.access", lambda *a, **k: False)
    one_line_error(capsys, "is not writable", "analyze", "--checkpoint", files / "lm", "--prompt", "hi", "--out",
                   files / "plots")
    monkeypatch.undo()

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied", str(files / "plots"))

    monkeypatch.setattr("llmarch.analysis.plots.analyze", refuse)
    one_line_error(capsys, "plots: Permission denied", "analyze", "--checkpoint", files / "lm", "--prompt", "hi",
                   "--out", files / "plots")


def warned(capsys, text, *argv) -> str:
    code, out, err = call(capsys, *argv)
    assert code == 0, err
    lines = [ln for ln in err.splitlines() if "warning:" in ln]
    assert len(lines) == 1 and text in lines[0], err
    return out


def test_generation_cut_by_the_context_says_so(files, capsys):
    out = warned(capsys, "generating at most 30 new tokens, not 100: the model's context_length 32",
                 "generate", "--checkpoint", files / "lm", "--prompt", "hi", "--max-new-tokens", "100",
                 "--temperature", "0")
    assert out.startswith("hi")
    code, out, err = call(capsys, "generate", "--checkpoint", files / "lm", "--prompt", "hi", "--top-k", "0",
                          "--max-new-tokens", "3", "--seed", "1")
    assert code == 0 and not err  # 0: no top-k cut


def test_eval_says_what_it_evaluated(files, capsys):
    lm, text = files / "lm", files / "text.txt"
    out = warned(capsys, "--max-tokens 100000 is more than the held-out split's", "eval", "--checkpoint", lm,
                 "--data", text, "--max-tokens", "100000", "--json")
    assert json.loads(out)["tokens"] > 0
    warned(capsys, "--max-tokens 5 is less than one window: evaluating one of 32 tokens", "eval",
           "--checkpoint", lm, "--data", text, "--max-tokens", "5")
    # a small file: the whole of it (--val-fraction 1) as one window shorter than the context
    out = warned(capsys, "fewer than one 32-token window: evaluating one window of 10", "eval", "--checkpoint", lm,
                 "--data", files / "short.txt", "--val-fraction", "1", "--json")
    assert json.loads(out)["tokens"] == 10  # 10 bytes and the end-of-text token
    code, out, err = call(capsys, "eval", "--checkpoint", lm, "--data", text, "--context", "16", "--dtype",
                          "bfloat16", "--device", "cpu", "--batch-size", "3", "--json")
    code32, out32, _ = call(capsys, "eval", "--checkpoint", lm, "--data", text, "--json")
    assert code == code32 == 0 and json.loads(out)["tokens"] == json.loads(out32)["tokens"], err  # all of it


def test_analyze_warns_when_it_cuts_the_prompt(files, capsys):
    warned(capsys, "the prompt has 40 tokens, more than the model's context_length 32: analysing its last 32",
           "analyze", "--checkpoint", files / "lm", "--prompt", "x" * 40, "--out", files / "long")


def test_nan_weights_are_refused_naming_the_tensor(files, tmp_path, capsys):
    import shutil

    from safetensors.torch import load_file, save_file

    ckpt = tmp_path / "nan"
    shutil.copytree(files / "lm", ckpt)
    state = load_file(str(ckpt / WEIGHTS))
    state["blocks.0.mlp.up.weight"][3, 5] = float("nan")
    save_file(state, str(ckpt / WEIGHTS))
    with pytest.raises(LlmarchError, match=r"tensor blocks.0.mlp.up.weight holds 1 NaN or infinite value"):
        load_model(ckpt)
    one_line_error(capsys, "blocks.0.mlp.up.weight holds 1 NaN", "generate", "--checkpoint", ckpt, "--prompt", "hi")


def test_config_file_names_the_fields_it_leaves_at_defaults(tmp_path):
    partial = tmp_path / "mine.json"
    partial.write_text(json.dumps({"d_model": 64, "n_heads": 4, "n_layers": 2, "positions": "rope"}))
    with pytest.warns(LlmarchWarning, match=r"leaves \d+ field\(s\) at their defaults: vocab_size=50257, value_dim=None, ffn='gelu'"):
        cfg = ModelConfig.load(partial)
    assert cfg.ffn == "gelu"
    full = tmp_path / "full.json"
    cfg.save(full)
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("error", LlmarchWarning)  # a config llmarch wrote has every field
        assert ModelConfig.load(full) == cfg
        # written by an older llmarch: the fields added since (here the last eight) are not named every load
        older = {k: v for k, v in json.loads(full.read_text()).items() if k not in list(cfg.to_dict())[-8:]}
        full.write_text(json.dumps(older))
        assert ModelConfig.load(full) == cfg


def test_non_utf8_data_is_named(tmp_path, capsys):
    from llmarch.data import read_documents

    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "good.txt").write_text(TEXT)
    (folder / "bad.txt").write_bytes(TEXT.encode()[:100] + b"\xff" + TEXT.encode()[100:])
    with pytest.warns(LlmarchWarning, match=r"skipped 1 of 2 file\(s\) .* not UTF-8 text: .*bad.txt \(byte 100\)"):
        assert [d.name for d in read_documents(str(folder))] == [str(folder / "good.txt")]
    with pytest.raises(LlmarchError, match=r"holds no UTF-8 text; not UTF-8: .*bad.txt \(byte 100\)"):
        read_documents(str(folder / "bad.txt"))


def test_progress_bar_has_a_rate_and_an_eta(capsys):
    from llmarch.progress import Bar

    with Bar(1000, "eval", "tok", every=0) as bar:
        for _ in range(4):
            bar.advance(250)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 5  # one a step (every=0 off a terminal) and the last
    assert re.fullmatch(r"eval \[#{20}\] 100% 1\.0k/1\.0k tok \S+ tok/s ETA 0m00s", lines[-1]), lines[-1]
    with Bar(10, "quick"):  # a step shorter than `every` off a terminal shows nothing
        pass
    assert capsys.readouterr().err == ""


def _parsers(parser, path=("llmarch",)):
    """(command path, parser) of every parser and subparser."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, path + (name,))


def test_every_option_of_every_command_is_described():
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name in commands:
        assert name in parser.description
    for path, p in _parsers(parser):
        text = p.format_help()
        for action in p._actions:
            if action.dest == "help" or isinstance(action, argparse._SubParsersAction):
                continue
            described = re.sub(r"\((default|choices)[^)]*\)", "", action.help or "").strip()
            assert described, (path, action.dest)
            for choice in action.choices or ():
                assert str(choice) in text, (path, action.dest, choice)
    train = commands["train"]
    helps = {a.dest: a.help for a in train._actions}
    assert "checkpoints" in helps["save_every"] and "eval_every" in helps["save_every"]
    assert "choices: " in helps["ffn"] and "swiglu" in helps["ffn"]
    assert "choices: clm, mlm, span, infill" in helps["objective"]


def test_eval_analyze_and_the_first_tokenizer_build_show_progress(files, capsys, monkeypatch):
    """Bars drawn on every update (every=0), as a long step draws them every 10 s off a terminal."""
    import functools

    from llmarch.data.corpus import Document
    from llmarch.data.dataset import TokenData, tokenizer_for
    from llmarch.progress import Bar

    monkeypatch.setattr("llmarch.progress.Bar", functools.partial(Bar, every=0))
    monkeypatch.setattr("llmarch.data.dataset.Bar", functools.partial(Bar, every=0))
    code, _, err = call(capsys, "eval", "--checkpoint", files / "lm", "--data", files / "text.txt", "--val-fraction",
                        "0.5")
    assert code == 0 and re.search(r"^eval \[#+\] 100% .* tok/s ETA 0m00s$", err, re.M), err
    code, _, err = call(capsys, "analyze", "--checkpoint", files / "lm", "--prompt", "def", "--corrupted", "abc",
                        "--out", files / "bars")
    assert code == 0 and re.search(r"^analyze \[#+\] 100% 5/5 steps", err, re.M), err  # map, lens, 1 x 3 patched
    docs = [Document(f"d{i}", TEXT + str(i)) for i in range(3)]
    TokenData.prepare(docs, tokenizer_for(docs, "bpe", 300))
    err = capsys.readouterr().err
    assert "training the BPE tokenizer (once; cached) [####" in err and "tokenizing the data (once; cached) [" in err


def test_a_signal_stop_is_reported_by_rank_0_only(monkeypatch, capsys):
    """Under torchrun every process stops after the same step and raises the same Interrupted; only rank 0 prints
    it (each printed it, the message two or more times), and every process exits with the signal's code."""
    import llmarch.cli.train as train_cli
    from llmarch.train.loop import Interrupted

    def stopped(args):
        raise Interrupted("stopped by SIGINT after step 3; saved run/step-000003, continue with --resume", 130)

    monkeypatch.setattr(train_cli, "cmd_train", stopped)
    for rank, shown in (("1", False), ("0", True)):
        monkeypatch.setenv("RANK", rank)
        code, _, err = call(capsys, "train", "--model", "gpt-tiny", "--out", "run")
        assert code == 130 and ("stopped by SIGINT" in err) == shown, (rank, err)
