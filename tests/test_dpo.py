"""DPO (train/dpo.py): the loss at the start, preference accuracy on held-out pairs rising above chance under
LoRA with the adapters-off reference, and the default preference set from the corpus."""
import json
import random

import pytest
import torch

import llmarch
from llmarch.cli import main
from llmarch.data.preferences import load_preferences
from llmarch.train.dpo import answer_logps
from llmarch.train.finetune import FinetuneConfig, finetune

from conftest import byte_checkpoint


def pairs(n, seed=0):
    """The word answered in capitals preferred to the word in lower case: a rule the held-out pairs share."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        word = "".join(rng.choice("abcdef") for _ in range(4))
        out.append({"prompt": word, "chosen": word.upper(), "rejected": word})
    return out


@pytest.fixture
def setup(tmp_path):
    data = tmp_path / "prefs.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in pairs(200)))
    return byte_checkpoint(tmp_path), data


def test_answer_logps_counts_only_targets():
    logits = torch.zeros(1, 3, 4)
    assert torch.allclose(answer_logps(logits, torch.tensor([[1, -100, 2]])), torch.tensor([2 * -1.3862944]))


def test_dpo_raises_held_out_preference_accuracy(setup, tmp_path):
    checkpoint, data = setup
    fc = FinetuneConfig(task="dpo", data=str(data), steps=30, lr=1e-2, batch_size=8, eval_every=30, beta=0.5,
                        lora_targets="qkv_proj,o_proj,gate_up,down")
    result = finetune(checkpoint, fc, tmp_path / "run", verbose=False)
    assert result.reward_accuracy > 0.8 and result.reward_margin > 0
    assert llmarch.load(result.checkpoint) is not None


def test_dpo_cli(setup, tmp_path, capsys):
    checkpoint, data = setup
    assert main(["finetune", "--task", "dpo", "--checkpoint", str(checkpoint), "--data", str(data), "--out",
                 str(tmp_path / "cli"), "--steps", "1", "--eval-every", "1", "--batch-size", "2"]) == 0
    assert "reward accuracy" in capsys.readouterr().out
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "x", "chosen": "y"}) + "\n")
    assert main(["finetune", "--task", "dpo", "--checkpoint", str(checkpoint), "--data", str(bad), "--out",
                 str(tmp_path / "x")]) == 2
    assert "'chosen' and 'rejected'" in capsys.readouterr().err


def test_default_preferences():
    data = load_preferences(None, 0.1)
    assert len(data.train) > 1000 and len(data.val) > 100
    p = data.val[0]
    assert p.chosen != p.rejected and p.prompt[0]["role"] == "user"


def test_dpo_full_method_uses_a_frozen_copy(setup, tmp_path):
    checkpoint, data = setup
    fc = FinetuneConfig(task="dpo", data=str(data), method="full", steps=3, lr=1e-3, batch_size=4, eval_every=3)
    result = finetune(checkpoint, fc, tmp_path / "full", verbose=False)
    assert result.adapter is None and result.reward_margin != 0.0
