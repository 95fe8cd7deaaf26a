"""A single-process checkpoint's optimizer and RNG state without pickle: tensors in safetensors files, everything
else (the optimizer's hyper-parameters, step counts that are plain numbers) in JSON. torch.save's pickles would run
code on load if crafted; these files are data only (docs/security.md)."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..trust import TRUST_ENV, read_json, trusted
from ..errors import LlmarchError

OPTIMIZER, OPTIMIZER_JSON, RNG = "optimizer.safetensors", "optimizer.json", "rng.safetensors"
LEGACY_OPTIMIZER, LEGACY_RNG = "optimizer.pt", "rng.pt"  # torch.save pickles, written before this format


def save_optimizer(opt: torch.optim.Optimizer, folder: Path) -> None:
    sd = opt.state_dict()
    tensors, plain = {}, {}
    for i, entry in sd["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{i}.{name}"] = value.detach().contiguous().cpu()
            else:
                plain.setdefault(str(i), {})[name] = value
    save_file(tensors, str(folder / OPTIMIZER))
    (folder / OPTIMIZER_JSON).write_text(json.dumps({"state": plain, "param_groups": sd["param_groups"]}))


def load_optimizer(folder: Path, device) -> dict:
    """The optimizer state dict saved in `folder` (torch's layout), on `device`."""
    if not (folder / OPTIMIZER).is_file():
        if (folder / LEGACY_OPTIMIZER).is_file():
            return _legacy(folder / LEGACY_OPTIMIZER, device)
        raise LlmarchError(f"checkpoint {folder} has no optimizer state ({OPTIMIZER}); it cannot be resumed")
    tensors = _read_tensors(folder / OPTIMIZER, device)
    meta = read_json(folder / OPTIMIZER_JSON)
    groups = meta.get("param_groups") if isinstance(meta, dict) else None
    plain = meta.get("state") if isinstance(meta, dict) else None
    if not isinstance(groups, list) or not isinstance(plain, dict) or not all(isinstance(g, dict) for g in groups):
        raise LlmarchError(f"{folder / OPTIMIZER_JSON} is malformed: it needs param_groups and state")
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        i, _, name = key.partition(".")
        if not i.isdigit() or not name:
            raise LlmarchError(f"{folder / OPTIMIZER} holds an unexpected tensor {key}")
        state.setdefault(int(i), {})[name] = value
    for i, entry in plain.items():
        if not i.isdigit() or not isinstance(entry, dict):
            raise LlmarchError(f"{folder / OPTIMIZER_JSON} is malformed: state entry {i}")
        state.setdefault(int(i), {}).update(entry)
    # JSON has no tuples: betas and the like come back as lists, which torch's optimizers take as they are
    groups = [{k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()} for g in groups]
    return {"state": state, "param_groups": groups}


def save_rng(folder: Path, name: str = RNG) -> None:
    save_file({"torch": torch.get_rng_state()}, str(folder / name))


def load_rng(path: Path) -> torch.Tensor | None:
    """The torch RNG state saved at `path` (or its legacy .pt twin), None if neither exists."""
    legacy = path.with_suffix(".pt")
    if path.is_file():
        state = _read_tensors(path, "cpu").get("torch")
        if state is None or state.dtype != torch.uint8:
            raise LlmarchError(f"{path} holds no torch RNG state")
        return state
    if legacy.is_file():
        return _legacy(legacy, "cpu")["torch"]
    return None


def _read_tensors(path: Path, device) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise LlmarchError(f"cannot read {path} (truncated or corrupt?): {str(e).splitlines()[0]}") from None


def _legacy(path: Path, device):
    if not trusted():
        raise LlmarchError(f"{path} is a pickle (torch.save, written by an older llmarch), which can run code when "
                           f"read; llmarch does not unpickle. If you trust it, set {TRUST_ENV}=1 (docs/security.md)")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        raise LlmarchError(f"cannot read {path}: {str(e).strip().splitlines()[0]}") from None


def read_trainer_state(ckpt: Path) -> dict:
    """A checkpoint's trainer_state.json (its step, the run's training config, the processes that wrote it),
    checked: missing, corrupt or malformed is one line."""
    path = ckpt / "trainer_state.json"
    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LlmarchError(f"cannot read {path} (missing or corrupt): {str(e).splitlines()[0]}") from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise LlmarchError(f"{path} is malformed: it needs the step as an integer")
    return state
