"""Supervised fine-tuning on conversations (train/sft.py): packing, assistant-only targets, LoRA and full runs
that lower the held-out assistant loss, the checkpoint loading as a plain model, the CLI and its errors."""
import json
import random

import pytest
import torch

import llmarch
from llmarch.checkpoint import save_model
from llmarch.cli import main
from llmarch.data import ByteTokenizer
from llmarch.data.sft import IGNORE, pack, packed_rows, stdlib_summary_task
from llmarch.train.finetune import FinetuneConfig, finetune

from conftest import byte_checkpoint


def conversations(n, seed=0):
    """Reverse a short word: learnable by a tiny model in a few dozen steps."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        word = "".join(rng.choice("abcdef") for _ in range(4))
        out.append({"messages": [{"role": "user", "content": word}, {"role": "assistant", "content": word[::-1]}]})
    return out


@pytest.fixture
def checkpoint(tmp_path):
    return byte_checkpoint(tmp_path, context_length=128)


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "convs.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in conversations(200)))
    return path


def test_pack_and_targets():
    assert pack([3, 4, 2, 5], 7) == [[0, 1], [2, 3]]
    inputs, labels = packed_rows([[([1, 2, 3], [False, True, True]), ([4, 5], [False, True])]], 6, 0)
    assert inputs["document_ids"].tolist() == [[0, 0, 0, 1, 1, 2]]
    assert labels.tolist() == [[2, 3, IGNORE, 5, IGNORE, IGNORE]]


@pytest.mark.parametrize("method", ["lora", "full"])
def test_sft_lowers_the_held_out_assistant_loss(checkpoint, data, tmp_path, method):
    fc = FinetuneConfig(task="sft", data=str(data), method=method, steps=30, lr=1e-2 if method == "lora" else 3e-3,
                        batch_size=4, eval_every=30, lora_rank=8, lora_targets="qkv_proj,o_proj,gate_up,down",
                        max_length=128)
    result = finetune(checkpoint, fc, tmp_path / "run", verbose=False)
    # a random base: its adapters learn less than its full weights, but both lower the held-out loss
    assert result.val_loss < result.base_val_loss - (0.3 if method == "lora" else 2.0)
    tuned = llmarch.load(result.checkpoint)  # adapters folded into a plain checkpoint
    assert not any("lora" in k for k in tuned.state_dict())


def test_sft_cli_and_bad_input(checkpoint, data, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["finetune", "--task", "sft", "--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out),
                 "--steps", "2", "--eval-every", "2", "--batch-size", "2", "--lora-rank", "4"]) == 0
    assert "held-out assistant loss" in capsys.readouterr().out
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    for args, message in ((["--data", str(bad)], "no assistant turn"),
                          (["--data", str(data), "--lora-rank", "0"], "rank must be positive"),
                          (["--data", str(data), "--lora-targets", "nope"], "matches no linear layer")):
        code = main(["finetune", "--task", "sft", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "x"),
                     "--steps", "1", *args])
        assert code == 2 and message in capsys.readouterr().err


def test_default_task_from_the_corpus():
    task = stdlib_summary_task()
    assert len(task) > 1000
    _, (user, assistant) = task[0]
    assert user["content"].startswith("Summarize") and "def " in user["content"]
    assert assistant["content"] not in user["content"]


def test_sft_of_a_recurrent_model_takes_one_conversation_a_row(data, tmp_path):
    """Mamba cannot keep packed conversations apart (its state runs on): rows of one conversation, padded."""
    torch.manual_seed(0)
    save_model(llmarch.build("mamba-tiny", vocab_size=257, n_layers=2, d_model=32, context_length=64), tmp_path / "m")
    ByteTokenizer().save(tmp_path / "m")
    fc = FinetuneConfig(task="sft", data=str(data), steps=2, batch_size=4, eval_every=2, lora_targets="in_proj,out_proj")
    result = finetune(tmp_path / "m", fc, tmp_path / "run", verbose=False)
    assert result.val_loss < result.base_val_loss + 0.1
