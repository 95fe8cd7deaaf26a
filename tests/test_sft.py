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


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("method", ["lora", "full"])
def test_a_half_precision_checkpoint_trains_in_fp32(tmp_path, data, dtype, method):
    """Published checkpoints are stored in fp16 or bf16: trained as they are, AdamW's eps rounds to 0 in fp16
    (NaN from the second step) and most bf16 updates round away. The loop upcasts the weights (master weights),
    so the loss stays finite and every weight of a full run moves."""
    path = tmp_path / "half"
    torch.manual_seed(0)
    base = llmarch.build("llama-tiny", vocab_size=257, n_layers=2, d_model=64, n_heads=4, n_kv_heads=2,
                         ffn_hidden=128, context_length=128)
    save_model(base.to(dtype), path)
    ByteTokenizer().save(path)
    fc = FinetuneConfig(task="sft", data=str(data), method=method, steps=4, lr=1e-5, batch_size=4, eval_every=4,
                        max_length=128)
    result = finetune(path, fc, tmp_path / "run", verbose=False)
    assert all(torch.isfinite(torch.tensor(v)) for v in [result.val_loss, *result.val_losses.values()])
    tuned = llmarch.load(result.checkpoint)
    assert all(p.dtype == torch.float32 for p in tuned.parameters())
    if method == "full":  # at lr 1e-5 in bf16 most of these weights would not have moved at all
        before = base.float().state_dict()
        moved = [(tuned.state_dict()[k] != v).float().mean().item() for k, v in before.items() if v.dim() == 2]
        assert min(moved) > 0.9


def test_conversations_cut_to_nothing_are_left_out(checkpoint, tmp_path, capsys):
    """A conversation whose assistant turn lies past --max-length has nothing to predict: left out and counted
    (a batch of only such rows divided by zero), and none left is a one-line error."""
    rows = [{"messages": [{"role": "user", "content": "x" * (60 if i % 2 else 2)},
                          {"role": "assistant", "content": "ok"}]} for i in range(20)]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fc = FinetuneConfig(task="sft", data=str(path), steps=3, batch_size=1, eval_every=3, max_length=32)
    result = finetune(checkpoint, fc, tmp_path / "run", verbose=True)
    assert "left out, their assistant turns past --max-length 32" in capsys.readouterr().err
    assert torch.isfinite(torch.tensor(result.val_loss))
    path.write_text("".join(json.dumps(r) + "\n" for r in rows if len(r["messages"][0]["content"]) > 2))
    with pytest.raises(llmarch.LlmarchError, match="keeps an assistant token within --max-length 32"):
        finetune(checkpoint, fc, tmp_path / "run2", verbose=False)


def test_runs_that_could_not_keep_their_weights_are_refused_before_training(checkpoint, data, tmp_path):
    """LoRA on a tied LM head trained to its first checkpoint, then could not fold the adapter in (the weight is
    the embedding); full fine-tuning of a quantized checkpoint said "all weights trained" and moved only its norms
    and embeddings. Both are refused before the first step, nothing written."""
    from llmarch.quant import quantize

    tied = tmp_path / "tied"
    torch.manual_seed(0)
    save_model(llmarch.build("gpt-tiny", vocab_size=257, n_layers=1, context_length=128), tied)
    ByteTokenizer().save(tied)
    fc = FinetuneConfig(task="sft", data=str(data), steps=2, batch_size=2, lora_targets="lm_head", max_length=128)
    with pytest.raises(llmarch.LlmarchError, match="tied to another module"):
        finetune(tied, fc, tmp_path / "run", verbose=False)
    q = tmp_path / "q"
    save_model(quantize(llmarch.load(checkpoint), "int8"), q)
    ByteTokenizer().save(q)
    fc = FinetuneConfig(task="sft", data=str(data), method="full", steps=2, batch_size=2, max_length=128)
    with pytest.raises(llmarch.LlmarchError, match="is quantized .int8.: --method full cannot train"):
        finetune(q, fc, tmp_path / "run2", verbose=False)
    assert not (tmp_path / "run").exists() and not (tmp_path / "run2").exists()


def test_a_lora_run_without_a_peft_adapter_says_so(tmp_path, data, capsys):
    """GPT-2's Conv1D layers have no PEFT slices of ours: the checkpoint holds the folded adapters and no adapter/
    folder, which the run now says rather than leaving it to be noticed."""
    path = tmp_path / "gpt"
    torch.manual_seed(0)
    save_model(llmarch.build("gpt-tiny", vocab_size=257, n_layers=1, context_length=128, tie_embeddings=False), path)
    ByteTokenizer().save(path)
    assert main(["finetune", "--task", "sft", "--checkpoint", str(path), "--data", str(data), "--steps", "1",
                 "--eval-every", "1", "--batch-size", "2", "--max-length", "128", "--lora-targets", "qkv_proj",
                 "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "no PEFT adapter" in out and "folded into its weights" in out
    assert not list((tmp_path / "run").rglob("adapter"))


def test_a_stopped_lora_run_writes_its_adapter_before_it_stops(checkpoint, data, tmp_path, monkeypatch):
    """A LoRA run stopped by a signal saves its checkpoint; it now writes that checkpoint's PEFT adapter too (the
    folder was missing), then stops as before."""
    import llmarch.train.sft as sft
    from llmarch.train.loop import Interrupted, Outcome

    real_run = sft.run

    def stopped(task, lc, out, resume=False, verbose=True):
        done = real_run(task, lc, out, resume, verbose)  # two steps and a checkpoint, then "the signal"
        raise Interrupted("stopped by SIGTERM after step 2", 143, Outcome(done.model, done.checkpoint))

    monkeypatch.setattr(sft, "run", stopped)
    fc = FinetuneConfig(task="sft", data=str(data), steps=2, batch_size=2, eval_every=2, max_length=128)
    with pytest.raises(Interrupted):
        finetune(checkpoint, fc, tmp_path / "run", verbose=False)
    assert (tmp_path / "run" / "step-000002" / "adapter" / "adapter_config.json").is_file()
