"""Run by test_distributed.py under torchrun (2 processes, gloo): several trainings in one job, so the processes
start once. argv[1]: a JSON spec {"root", "corpus", "single"}; rank 0 writes {run name: [losses, val losses]}
to root/results.json."""
import json
import shutil
import sys
from pathlib import Path

import torch.distributed as dist

import llmarch
from llmarch.train import TrainConfig, train

spec = json.loads(Path(sys.argv[1]).read_text())
root, corpus = Path(spec["root"]), spec["corpus"]
GPT = dict(vocab_size=257, d_model=32, n_layers=2, n_heads=2, context_length=32, dropout=0.0)
SMALL = dict(vocab_size=400, d_model=32, n_layers=2, n_heads=2, context_length=32)
FAMILIES = {  # every family, as FSDP trains it: encoder (masked LM), encoder-decoder, mixture of experts, SSM
    "bert": ("bert-tiny", "mlm", {}),
    "t5": ("t5-tiny", "span", dict(n_decoder_layers=2)),
    "switch": ("switch-tiny", "span", dict(n_decoder_layers=2)),
    "mixtral": ("mixtral-tiny", "clm", dict(n_kv_heads=1)),
    "mamba": ("mamba-tiny", "clm", {}),
}
# an MoE whose load-balancing loss (over the whole batch) and router z-loss are part of what is trained
MOE = dict(SMALL, n_kv_heads=1, dropout=0.0, router_aux_loss_weight=1.0, router_z_loss_weight=0.01)
results = {}


def config(steps=20, **kw) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=4, eval_every=10, eval_tokens=512, tokenizer="byte", data=corpus,
                       log_every=100, **kw)


def record(name, result):
    results[name] = [result.losses, result.val_losses]


def resume_from_step_10(source: Path, name: str, **kw):
    """A copy of `source` as it was after step 10, resumed here."""
    copy = root / name
    if dist.get_rank() == 0:
        shutil.copytree(source, copy)
        shutil.rmtree(copy / "step-000020")
        (copy / "latest").write_text("step-000010\n")
    dist.barrier()
    record(name, train(None, config(**kw), copy, resume=True, verbose=False))


dist.init_process_group("gloo")
for parallel in ("ddp", "fsdp"):
    record(parallel, train(llmarch.resolve("gpt-tiny", **GPT), config(parallel=parallel), root / parallel,
                           verbose=False))
resume_from_step_10(root / "fsdp", "fsdp-resumed-2", parallel="fsdp")
resume_from_step_10(Path(spec["single"]), "single-resumed-2", parallel="fsdp")
for checkpointing in (False, True):
    tc = config(4, parallel="fsdp", activation_checkpointing=checkpointing)
    record(f"fsdp-4-checkpointing-{checkpointing}",
           train(llmarch.resolve("gpt-tiny", **GPT), tc, root / f"fsdp-4-{checkpointing}", verbose=False))
for parallel in ("ddp", "fsdp"):
    record(f"moe-aux-{parallel}", train(llmarch.resolve("mixtral-tiny", **MOE), config(6, parallel=parallel),
                                        root / f"moe-aux-{parallel}", verbose=False))
for name, (preset, objective, overrides) in FAMILIES.items():
    tc = config(2, parallel="fsdp", objective=objective)
    record(name, train(llmarch.resolve(preset, **{**SMALL, **overrides}), tc, root / name, verbose=False))
if dist.get_rank() == 0:
    (root / "results.json").write_text(json.dumps(results))
dist.destroy_process_group()
