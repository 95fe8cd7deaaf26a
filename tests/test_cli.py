import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmarch import ModelConfig
from llmarch.cli import build_parser, main
from llmarch.train import TrainConfig


def run(*args, cwd=None):
    """`llmarch args` as a user runs it, in a process of its own: (exit code, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "llmarch", *args], capture_output=True, text=True, cwd=cwd)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def cli(capsys, monkeypatch):
    """run's twin in this process (the same entry point, llmarch.cli.main): each process started torch again,
    seconds apiece, so the tests run most commands here and keep `run` for one of each command, where the exit
    code and the one-line error cross the process boundary."""
    def call(*args, cwd=None):
        if cwd is not None:
            monkeypatch.chdir(cwd)
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # the option parser's errors
            code = e.code
        out, err = capsys.readouterr()
        return code, out, err
    return call


def assert_one_line_error(code, err, text):
    assert code == 2
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert text in err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from llmarch.data import read_documents

    folder = tmp_path_factory.mktemp("cli")
    corpus = folder / "corpus"
    corpus.mkdir()
    for doc in read_documents()[:20]:
        (corpus / doc.name.replace("/", "_")).write_text(doc.text)
    out = folder / "run"
    code, stdout, err = run("train", "--model", "gpt-tiny", "--steps", "4", "--out", str(out), "--data", str(corpus),
                            "--tokenizer", "byte", "--vocab-size", "257", "--n-layers", "1", "--d-model", "32",
                            "--n-heads", "2", "--context-length", "32", "--batch-size", "2", "--eval-every", "2",
                            "--sample-prompt", "def ", "--sample-tokens", "5")
    assert code == 0, err
    assert "final validation loss" in stdout and "sample:" in stdout
    return out, corpus


def test_info_json_keys_and_text(cli):
    code, out, _ = run("info", "llama2-7b", "--json")
    facts = json.loads(out)
    assert code == 0 and facts["parameters"] == 6_738_415_616
    assert set(facts) == {"parameters", "active_parameters", "non_embedding_parameters", "flops_per_token",
                          "kv_cache_bytes_per_token", "state_bytes_per_sequence", "weight_bytes",
                          "bytes_per_parameter"}
    assert facts["state_bytes_per_sequence"] == 0  # attention only: a KV cache, no recurrent state
    assert facts["active_parameters"] == facts["parameters"]  # dense: every parameter is active
    code, out, _ = cli("info", "gpt2", "--n-layers", "1", "--json")
    assert json.loads(out)["parameters"] == 124_439_808 - 11 * 7_087_872
    code, out, _ = cli("info", "bert-tiny")  # an encoder keeps no decoding cache: no KV-cache line (it had one)
    assert code == 0 and "KV-cache" not in out and "parameters:" in out
    assert "KV-cache bytes per token" in cli("info", "t5-tiny")[1]  # an encoder-decoder's decoder does


def test_info_reports_state_bytes_for_ssm_and_hybrid_stacks(cli):
    """Mamba's state per sequence: per layer the conv's last 3 inputs over 2 x 768 channels (bf16) and the
    (1536, 16) fp32 SSM state; no KV cache. hybrid-tiny: both, the KV cache of its 2 attention layers only."""
    facts = json.loads(cli("info", "mamba-130m", "--json")[1])
    assert facts["state_bytes_per_sequence"] == 24 * (1536 * 3 * 2 + 1536 * 16 * 4)
    assert facts["kv_cache_bytes_per_token"] == 0
    hybrid = json.loads(cli("info", "hybrid-tiny", "--json")[1])
    assert hybrid["kv_cache_bytes_per_token"] == 2 * 2 * 4 * 32 * 2
    assert hybrid["state_bytes_per_sequence"] == 6 * (512 * 3 * 2 + 512 * 16 * 4)
    code, out, _ = cli("info", "hybrid-tiny")
    assert code == 0 and "mixer mamba (attention in layers 2, 6)" in out and "state bytes per sequence" in out


def test_info_reports_weight_memory_as_loaded(tmp_path, cli):
    """Bytes per parameter from the config alone: 2 at bf16; under --quantize, what the quantized layers hold;
    for a quantized checkpoint, exactly the bytes of the model `llmarch.load` builds from it (fp32 elsewhere)."""
    import llmarch
    from llmarch.models.build import build_model
    from llmarch.presets import resolve
    from llmarch.quant import quantize, weight_bytes
    from llmarch.quant.checkpoint import save_quantized

    facts = json.loads(cli("info", "llama-tiny", "--json")[1])
    assert facts["weight_bytes"] == 2 * facts["parameters"] and facts["bytes_per_parameter"] == 2
    int8 = json.loads(cli("info", "llama-tiny", "--quantize", "int8", "--json")[1])
    int4 = json.loads(cli("info", "llama-tiny", "--quantize", "int4", "--json")[1])
    embed = 8192 * 256 * 2  # the embedding table stays bf16; every linear (head included) is quantized
    assert int8["weight_bytes"] - embed == pytest.approx(facts["parameters"] - 8192 * 256, rel=0.02)
    assert 0.5 < (int4["weight_bytes"] - embed) / (facts["parameters"] - 8192 * 256) < 0.6  # + scales, zeros
    cfg = resolve("llama-tiny", d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden=128, vocab_size=256)
    for method in ("int8", "int4"):
        model = quantize(build_model(cfg, "cpu"), method, group_size=32)
        save_quantized(model, model.quantization, tmp_path / method)
        facts = json.loads(cli("info", str(tmp_path / method), "--dtype", "fp32", "--json")[1])
        assert facts["weight_bytes"] == weight_bytes(llmarch.load(tmp_path / method)), method
    code, _, err = cli("info", str(tmp_path / "int4"), "--quantize", "int8")
    assert code == 2 and "is quantized already (int4)" in err


def test_generate_and_eval(run_dir, cli):
    out, corpus = run_dir
    code, stdout, err = cli("generate", "--checkpoint", str(out), "--prompt", "import", "--max-new-tokens", "8",
                            "--temperature", "0")
    assert code == 0, err
    assert stdout.startswith("import")
    code, stdout, err = cli("generate", "--checkpoint", str(out), "--prompt", "a", "--prompt", "class Foo",
                            "--max-new-tokens", "4", "--seed", "1")
    assert code == 0 and stdout.count("--- [") == 2
    code, stdout, err = cli("eval", "--checkpoint", str(out), "--data", str(corpus), "--json")
    assert code == 0, err
    assert json.loads(stdout)["perplexity"] > 1


def test_bad_input_is_one_line_exit_2(run_dir, tmp_path, capsys):
    out, corpus = run_dir
    bad_cfg = tmp_path / "bad.json"
    bad_cfg.write_text(json.dumps({"d_model": 100, "n_heads": 3}))
    hf_config = tmp_path / "config.json"
    hf_config.write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    cases = [
        (("info", "nonexistent-model"), "unknown model 'nonexistent-model'"),
        (("info", "nonexistent.gguf"), "nonexistent.gguf: no such checkpoint, .gguf file or config file"),
        (("train", "--model", str(hf_config), "--out", str(tmp_path / "r")), "is a Hugging Face config.json"),
        (("info", str(bad_cfg)), "not divisible by n_heads"),
        (("info", "gpt2", "--ffn", "swishy"), "unknown ffn 'swishy'"),
        (("info", "gpt2", "--n-layers", "many"), "n_layers must be int"),
        (("generate", "--checkpoint", str(tmp_path / "none"), "--prompt", "x"), "does not exist"),
        (("generate", "--checkpoint", str(out), "--prompt", "x" * 40), "longer than the model's context_length"),
        (("eval", "--checkpoint", str(out), "--data", str(tmp_path / "missing")), "does not exist"),
        (("train", "--model", "gpt-tiny", "--steps", "1", "--out", str(out)), "already holds a run"),
        (("train", "--model", "gpt-tiny", "--steps", "0", "--out", str(tmp_path / "r")), "steps must be positive"),
    ]
    for i, (args, text) in enumerate(cases):
        if i < 2:  # as a user runs it, in a process of its own
            code, _, err = run(*args)
        else:  # the same entry point in this process (each run starts torch again: seconds apiece)
            try:
                code = main(list(args))
            except SystemExit as e:  # the option parser's errors
                code = e.code
            err = capsys.readouterr().err
        assert_one_line_error(code, err, text)


def test_truncated_checkpoint_is_one_line_error(run_dir, tmp_path):
    import shutil

    out, _ = run_dir
    ckpt = tmp_path / "ckpt"
    shutil.copytree(out / (out / "latest").read_text().strip(), ckpt)
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    code, _, err = run("generate", "--checkpoint", str(ckpt), "--prompt", "x")
    assert_one_line_error(code, err, "truncated or corrupt")


def test_help_lists_every_option_with_default():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        text = p.format_help()
        for action in p._actions:
            if action.help and action.option_strings and action.dest != "help":
                assert action.option_strings[0] in text
                assert "default" in action.help or "required" in action.help, (name, action.dest)
    train_help = sub.choices["train"].format_help()
    for f in dataclasses.fields(TrainConfig) + dataclasses.fields(ModelConfig):
        assert "--" + f.name.replace("_", "-") in train_help


def test_tokenizer_checkpoint_mismatch_is_one_line_error(run_dir, tmp_path, cli):
    """A tokenizer that can emit ids the model has no embedding for (vocab > 257)."""
    import shutil

    from llmarch.data import train_bpe

    out, _ = run_dir
    ckpt = tmp_path / "ckpt"
    shutil.copytree(out / (out / "latest").read_text().strip(), ckpt)
    train_bpe(["def main():\n    return 0\n" * 50], vocab_size=300).save(ckpt)
    for runner, args in ((cli, ("generate", "--checkpoint", str(ckpt), "--prompt", "def")),
                         (run, ("eval", "--checkpoint", str(ckpt)))):  # eval's one process of its own
        code, _, err = runner(*args)
        assert_one_line_error(code, err, "tokens but the model's vocab_size is 257")


@pytest.mark.parametrize("args, text", [
    (["generate", "--checkpoint", "nowhere", "--prompt", "x", "--num-beams", "0"], "num_beams must be >= 1"),
    (["train", "--model", "t5-tiny", "--objective", "clm", "--steps", "1", "--out", "unused"],
     "objective clm does not fit"),
    (["finetune", "--task", "seq2seq", "--checkpoint", "gpt-tiny", "--out", "unused"], "not an encoder-decoder"),
])
def test_encoder_decoder_bad_input_is_one_line(args, text, tmp_path, cli):
    runner = run if args[0] == "finetune" else cli  # finetune's one process of its own
    assert_one_line_error(*runner(*args, cwd=tmp_path)[::2], text)


def test_analyze_writes_attention_maps_logit_lens_and_patching(run_dir, tmp_path, cli):
    out, _ = run_dir
    code, stdout, err = cli("analyze", "--checkpoint", str(out), "--prompt", "def main():",
                            "--corrupted", "class Foo:\n", "--out", str(tmp_path / "a"))
    assert code == 0, err
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["files"] == ["attention-0.png", "logit-lens.png", "patching.png"]
    assert all((tmp_path / "a" / f).stat().st_size > 1000 for f in summary["files"])
    assert len(summary["patching"]) == 1 and len(summary["patching"][0]) == 11  # layers x positions
    code, _, err = run("analyze", "--checkpoint", str(out), "--prompt", "def", "--corrupted", "de",
                       "--out", str(tmp_path / "b"))
    assert code == 2 and "same length" in err and len(err.strip().splitlines()) == 1


def test_analyze_reads_an_encoder_decoder_checkpoint(tmp_path, cli):
    import llmarch
    from llmarch.checkpoint import save_model
    from llmarch.data.tokenizer import ByteTokenizer

    ckpt = tmp_path / "t5"
    save_model(llmarch.build("t5-tiny", vocab_size=300, n_layers=1, n_decoder_layers=1, d_model=32, n_heads=2), ckpt)
    ByteTokenizer().save(ckpt)
    code, stdout, err = cli("analyze", "--checkpoint", str(ckpt), "--prompt", "hi there", "--out", str(tmp_path / "a"))
    assert code == 0, err
    files = json.loads((tmp_path / "a" / "summary.json").read_text())["files"]
    assert "attention-decoder-0-cross.png" in files and "output" in stdout


def test_convert_offers_the_gguf_types_the_writer_writes():
    from llmarch.cli.convert import GGUF_TYPES
    from llmarch.interop.gguf_writer import TYPES

    assert GGUF_TYPES == TYPES


def test_convert_to_gguf_stopped_by_sigterm_leaves_nothing(tmp_path, monkeypatch):
    """SIGTERM mid-write ends convert --to-gguf as an exception, so its temporary file is removed (a killed run had
    left a 540 MB hidden .tmp); the temporary name is a fresh one, so a user's file of any name is safe."""
    import os
    import signal

    import llmarch.interop.gguf_writer as writer
    from conftest import byte_checkpoint

    ckpt = byte_checkpoint(tmp_path)
    (tmp_path / ".x.gguf.tmp").write_text("mine")

    def killed(model, path, *args):
        Path(path).write_bytes(b"half")
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(writer, "to_gguf", killed)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped:
        main(["convert", "--to-gguf", str(ckpt), "--out", str(tmp_path / "x.gguf")])
    assert stopped.value.code == 128 + signal.SIGTERM
    assert sorted(p.name for p in tmp_path.iterdir()) == [".x.gguf.tmp", "ckpt"]
    assert (tmp_path / ".x.gguf.tmp").read_text() == "mine"
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back


def test_installed_command_runs_and_errors_in_one_line():
    """The `llmarch` script that installing the package writes (pyproject's [project.scripts]), beside this
    interpreter: every other test runs `python -m llmarch` or main() itself, so only this one would see the entry
    point renamed or gone."""
    script = Path(sys.executable).with_name("llmarch")
    if not script.exists():
        pytest.skip(f"no installed llmarch script beside {sys.executable} (the package is not installed)")
    bad = subprocess.run([str(script), "info", "no-such-model"], capture_output=True, text=True)
    assert_one_line_error(bad.returncode, bad.stderr, "unknown model 'no-such-model'")
    # a reader that goes away before the output (`llmarch info ... | head`): no error message, 128 + SIGPIPE
    piped = subprocess.Popen([str(script), "info", "gpt-tiny"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    piped.stdout.close()
    assert piped.wait() == 141 and piped.stderr.read() == b""
