"""What resuming a run needs beyond the checkpoint's model: the run's settings checked against what the user
asks now, and, for fine-tuning, the model it started from. A fine-tuning run's checkpoints hold LoRA adapters
folded into their weights (checkpoint.py), and its frozen base is also the DPO reference and the base that SFT
scores, so a resumed fine-tuning run rebuilds its starting model from the checkpoint it started from, checks by
a digest that it is the same one, and then reads its trained parameters back: the unmerged adapters from
`trained.safetensors`, written beside the merged weights, or all the weights of a full fine-tuning."""
from __future__ import annotations

import hashlib
from dataclasses import asdict, fields, replace
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..adapters import adapters
from ..checkpoint import WEIGHTS
from ..errors import LlmarchError

TRAINED = "trained.safetensors"  # a run with adapters: its trained parameters, unmerged, by parameter name
DIGEST = "start_model_digest"  # train_config's record of the model a fine-tuning run started from


def resumed_config(config, saved, given: set[str], may_change: tuple[str, ...]):
    """`config` (a dataclass of settings) checked against the run's saved one (`saved`, trainer_state.json's
    train_config): the fields named in `given` (set explicitly by the user) may differ only where `may_change`
    says; every other field takes the saved value, so a resumed run trains exactly as it started."""
    if not isinstance(saved, dict):
        raise LlmarchError("the run's trainer_state.json holds no training configuration")
    names = {f.name for f in fields(config)}
    saved = {k: v for k, v in saved.items() if k in names}
    if saved.get("warmup_steps") is None and "steps" in saved:  # the warm-up the run had, not the new --steps'
        saved["warmup_steps"] = replace(config, **saved).warmup
    out = {}
    for f in fields(config):
        mine = getattr(config, f.name)
        if f.name not in saved or f.name in may_change and f.name in given:
            out[f.name] = mine
        elif f.name in given and mine != saved[f.name]:
            raise LlmarchError(
                f"--{f.name.replace('_', '-')} {mine} contradicts the resumed run's {f.name} {saved[f.name]!r}; "
                f"a resumed run keeps its settings (these may change: {', '.join(may_change)})")
        else:
            out[f.name] = saved[f.name]
    return type(config)(**out)


@torch.no_grad()
def digest(model: torch.nn.Module) -> str:
    """SHA-256 of the model's state: each tensor's name, shape, dtype and bytes (exact, unlike float sums, whose
    rounding changes with the number of threads that reduce them)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:32]


def check_start(model: torch.nn.Module, saved: dict, source) -> None:
    """The rebuilt starting model is the one the run started from (its digest, recorded at the start)."""
    recorded = saved.get(DIGEST) if isinstance(saved, dict) else None
    if recorded is not None and digest(model) != recorded:
        raise LlmarchError(f"{source} is not the model this run started from (its weights differ); resume needs "
                           "the same --checkpoint, unchanged")


def save_trained(model: torch.nn.Module, folder: Path) -> None:
    """A model with adapters: its trained parameters, unmerged, which the checkpoint's merged weights no longer
    hold apart (nothing for a model without adapters: its weights are its trained parameters)."""
    if adapters(model):
        save_file({n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad},
                  str(folder / TRAINED))


@torch.no_grad()
def load_trained(model: torch.nn.Module, ckpt: Path) -> None:
    """Into a rebuilt starting model, the trained parameters of the checkpoint `ckpt`: from TRAINED where the run
    has adapters, else from its weights, by name."""
    path = ckpt / (TRAINED if adapters(model) else WEIGHTS)
    wanted = {n: p for n, p in model.named_parameters() if p.requires_grad}
    try:
        with safe_open(str(path), "pt", device="cpu") as f:
            stored = set(f.keys())
            missing = sorted(set(wanted) - stored)
            if missing:
                raise LlmarchError(f"{path} has no {missing[0]} ({len(missing)} trained tensors missing): it is "
                                   "not a checkpoint of this run's model")
            for name, p in wanted.items():
                t = f.get_tensor(name)
                if t.shape != p.shape:
                    raise LlmarchError(f"{path} holds {name} of shape {tuple(t.shape)}; the run's model has "
                                       f"{tuple(p.shape)}")
                p.copy_(t)
    except (SafetensorError, OSError) as e:
        raise LlmarchError(f"cannot read {path} (missing, truncated or corrupt?): {str(e).splitlines()[0]}") from None


def absolute(name: str | Path) -> str:
    """A path that exists, made absolute; anything else (a preset name) as it is."""
    path = Path(name)
    return str(path.resolve()) if path.exists() else str(name)


class FineTuning:
    """What the fine-tuning tasks (classify, seq2seq, sft, dpo) share about resuming: the loop rebuilds their
    starting model from `checkpoint` (`rebuilds`), which their recorded configuration names."""
    rebuilds = True
    loss_baseline = None

    def __init__(self, checkpoint: str | Path, fc):
        self.checkpoint, self.fc = checkpoint, fc

    @property
    def source(self) -> str:
        """The starting checkpoint as a resumed run finds it from anywhere: a path made absolute (a preset name,
        which seq2seq also starts from, as it is)."""
        return absolute(self.checkpoint)

    def metadata(self) -> dict:
        """The settings, with the starting checkpoint's and the data's paths absolute: a run resumed from another
        directory reads the same files (a relative --data read another directory's file of that name)."""
        fc = asdict(self.fc)
        return {**fc, "data": None if fc.get("data") is None else absolute(fc["data"]), "checkpoint": self.source}

    def files(self) -> dict[str, str]:
        return {}
