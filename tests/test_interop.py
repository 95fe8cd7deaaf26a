"""Hugging Face interop without `transformers` at run time: sharding, dtype, errors, the CLI."""
import json
import subprocess
import sys

import pytest
import torch

import llmarch
from llmarch import LlmarchError
from llmarch.data import train_bpe

from conftest import tiny


def same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("base, hf_type", [("llama-tiny", "llama"), ("gpt-tiny", "gpt2")])
def test_to_hf_from_hf_round_trip_sharded(tmp_path, base, hf_type):
    model = tiny(base)
    assert model.config.hf_model_type == hf_type
    from llmarch.interop.hf import to_hf

    to_hf(model, tmp_path, max_shard_bytes=20_000)
    assert (tmp_path / "model.safetensors.index.json").is_file() and len(list(tmp_path.glob("*.safetensors"))) > 2
    again = llmarch.from_hf(tmp_path)
    assert same_state(model, again)
    half = llmarch.from_hf(tmp_path, dtype=torch.bfloat16)
    assert half.embed.weight.dtype == torch.bfloat16
    assert torch.equal(half.embed.weight, model.embed.weight.to(torch.bfloat16))
    assert same_state(llmarch.load(tmp_path), model)  # load() recognises an HF directory


def hf_dir(tmp_path):
    llmarch.to_hf(tiny(), tmp_path)
    return tmp_path


def test_unknown_model_type(tmp_path):
    d = hf_dir(tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "model_type": "bert2000"}))
    with pytest.raises(LlmarchError, match="unknown Hugging Face model_type 'bert2000'"):
        llmarch.from_hf(d)


def _rewrite(d, fn):
    from safetensors.torch import load_file, save_file

    state = load_file(str(d / "model.safetensors"))
    save_file(fn(state), str(d / "model.safetensors"))


def test_missing_extra_and_misshapen_tensors_are_named(tmp_path):
    d = hf_dir(tmp_path)
    _rewrite(d, lambda s: {k: v for k, v in s.items() if k != "model.layers.1.mlp.up_proj.weight"})
    with pytest.raises(LlmarchError, match="missing tensor model.layers.1.mlp.up_proj.weight"):
        llmarch.from_hf(d)
    d = hf_dir(tmp_path / "b")
    _rewrite(d, lambda s: {**s, "model.layers.0.self_attn.extra.weight": torch.zeros(2)})
    with pytest.raises(LlmarchError, match="unexpected tensor model.layers.0.self_attn.extra.weight"):
        llmarch.from_hf(d)
    d = hf_dir(tmp_path / "c")
    _rewrite(d, lambda s: {**s, "model.norm.weight": torch.zeros(3)})
    with pytest.raises(LlmarchError, match=r"tensor model.norm.weight has shape \(3,\), the config expects \(64,\)"):
        llmarch.from_hf(d)


def test_truncated_and_corrupt_files(tmp_path):
    d = hf_dir(tmp_path)
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) - 100])
    with pytest.raises(LlmarchError, match="is truncated: tensor"):
        llmarch.from_hf(d)
    (d / "model.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(LlmarchError, match="truncated or corrupt"):
        llmarch.from_hf(d)


def run(*args):
    """`llmarch args` in a process of its own, as a user runs it: (exit code, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "llmarch", *args], capture_output=True, text=True)
    return proc.returncode, proc.stdout, proc.stderr


def test_cli_convert_both_ways_and_generate_from_hf_dir(tmp_path, capsys):
    """The commands run in this process (llmarch.cli.main; a process of its own imports torch again, seconds
    apiece) but for one, convert's one-line error, which crosses the process boundary."""
    from llmarch.cli import main

    def call(*args):
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    model = tiny(vocab_size=300)
    ckpt = tmp_path / "ckpt"
    from llmarch.checkpoint import save_model

    save_model(model, ckpt)
    train_bpe(["def main():\n    return 0\n" * 50, "import os, sys\n"], vocab_size=300).save(ckpt)
    code, out, err = call("convert", "--to-hf", str(ckpt), "--out", str(tmp_path / "hf"))
    assert code == 0, err
    assert (tmp_path / "hf" / "tokenizer.json").is_file()
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["model_type"] == "llama"
    code, out, err = call("convert", "--from-hf", str(tmp_path / "hf"), "--out", str(tmp_path / "back"))
    assert code == 0, err
    assert same_state(llmarch.load(tmp_path / "back"), model)
    code, out, err = call("generate", "--checkpoint", str(tmp_path / "hf"), "--prompt", "def", "--max-new-tokens", "5",
                          "--temperature", "0")
    assert code == 0, err
    assert out.startswith("def")
    (tmp_path / "data.txt").write_text("def main():\n    return 0\n" * 300)
    code, out, err = call("eval", "--checkpoint", str(tmp_path / "hf"), "--data", str(tmp_path / "data.txt"), "--json")
    assert code == 0, err
    assert json.loads(out)["perplexity"] > 1
    code, _, err = run("convert", "--from-hf", str(tmp_path / "hf"), "--out", str(tmp_path / "back"))
    assert code == 2 and "is not empty" in err and "Traceback" not in err
    code, _, err = call("convert", "--from-hf", str(ckpt), "--out", str(tmp_path / "x"))
    assert code == 2 and "is not a Hugging Face checkpoint" in err


def test_gpt2_checkpoint_without_transformer_prefix(tmp_path):
    """Older GPT-2 files name tensors `h.0.attn...` and carry `attn.bias` mask buffers."""
    model = tiny("gpt-tiny")
    llmarch.to_hf(model, tmp_path)
    _rewrite(tmp_path, lambda s: {**{k.removeprefix("transformer."): v for k, v in s.items()},
                                  "h.0.attn.bias": torch.ones(1, 1, 4, 4)})
    assert same_state(llmarch.from_hf(tmp_path), model)


def test_a_model_saved_without_its_head_is_named_as_such(tmp_path):
    """A BertModel (what sentence-embedding checkpoints are) saves the body alone, without the `bert.` prefix: it
    reads as an embedding model (tests/parity/test_bert.py); one whose config.json names a head it does not hold
    is an error that says so, rather than only that `bert.embeddings...` is missing."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=64)
    transformers.BertModel(cfg).save_pretrained(tmp_path)
    assert llmarch.from_hf(tmp_path).config.head == "embed"
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "architectures": ["BertForMaskedLM"]}))
    with pytest.raises(LlmarchError, match=r"without the `bert\.` prefix, as a model saved without its head"):
        llmarch.from_hf(tmp_path)


def test_mixed_dtype_checkpoints_load_in_one_dtype_and_integer_weights_are_named(tmp_path):
    """Some exports keep fp32 norms beside bf16 or fp16 matrices: they load in one dtype (config.json's, else
    fp32), as transformers casts them, where llmarch's matmuls had failed on the mix. An integer tensor where a
    weight belongs is a one-line error, not a load_state_dict traceback."""
    from safetensors.torch import load_file, save_file

    model = tiny("llama-tiny")
    llmarch.to_hf(model, tmp_path / "hf")
    file = tmp_path / "hf" / "model.safetensors"
    state = load_file(file)
    mixed = {k: v.to(torch.bfloat16 if "proj" in k else torch.float16 if "embed" in k else v.dtype)
             for k, v in state.items()}
    save_file(mixed, file, metadata={"format": "pt"})
    loaded = llmarch.from_hf(tmp_path / "hf")
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    ids = torch.randint(0, 97, (1, 9))
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, model(ids).logits, atol=2e-2)
    save_file({**state, "model.norm.weight": torch.ones(64, dtype=torch.int32)}, file, metadata={"format": "pt"})
    with pytest.raises(LlmarchError, match="model.norm.weight is stored as torch.int32, not a floating-point"):
        llmarch.from_hf(tmp_path / "hf")
