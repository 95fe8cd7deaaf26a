"""Model checkpoints as directories: config.json + model.safetensors (+ tokenizer files).
A training run's directory holds step-NNNNNN/ checkpoints and a `latest` file naming the newest."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import ModelConfig
from .errors import LlmarchError, first_and_count
from .layers import POSITIONS
from .models import EncoderDecoderLM, TransformerLM

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
SHARDED = "dcp"  # a multi-process run's model and optimizer state, in torch.distributed.checkpoint's format


def model_class(cfg: ModelConfig) -> type:
    return EncoderDecoderLM if cfg.is_encoder_decoder else TransformerLM


def stacks(model) -> list[tuple[nn.Module, ModelConfig]]:
    """Each stack of blocks of a model with the config it was built from (one, or encoder and decoder)."""
    cfg = model.config
    if cfg.is_encoder_decoder:
        return [(model.encoder, cfg.stack_config("encoder")), (model.decoder, cfg.stack_config("decoder"))]
    return [(model, cfg)]


def build_model(cfg: ModelConfig, device: str | torch.device | None = None) -> TransformerLM:
    with torch.device(device or "cpu"):
        return model_class(cfg)(cfg)


def with_head(model: TransformerLM, head: str, n_labels: int = 2, **overrides) -> TransformerLM:
    """A model of the same body (embeddings, blocks, final norm: weights shared, not copied) with a fresh
    `head` (layers/heads.py), e.g. a pretrained masked LM turned into a classifier for fine-tuning."""
    if model.config.is_encoder_decoder:
        raise LlmarchError("with_head: classifier heads are for decoder-only and encoder-only models")
    cfg = model.config.replace(head=head, n_labels=n_labels, **overrides)
    device = model.embed.weight.device
    new = build_model(cfg, device)
    body = {k: v for k, v in model.state_dict().items() if not k.startswith(("lm_head.", "head_transform."))}
    if model.config.head != head or model.config.n_labels != n_labels:  # a different head starts afresh
        body = {k: v for k, v in body.items() if not k.startswith(("pooler.", "classifier."))}
    missing, _ = new.load_state_dict(body, strict=False, assign=True)
    new_head = ("pooler.", "classifier.", "lm_head.", "head_transform.")
    if any(not k.startswith(new_head) for k in missing):
        raise LlmarchError(f"cannot move the body onto the new head: {first_and_count(missing)} missing")
    if cfg.tied_head:
        new.lm_head.weight = new.embed.weight
    return new


def state_for_saving(model: TransformerLM) -> dict[str, torch.Tensor]:
    """The state dict without the tied LM head (safetensors stores no aliases)."""
    state = model.state_dict()
    if model.config.tied_head:
        state.pop("lm_head.weight")
    return {k: v.detach().contiguous() for k, v in state.items()}


def save_model(model: TransformerLM, directory: str | Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(state_for_saving(model), str(directory / WEIGHTS), metadata={"format": "pt"})
    model.config.save(directory / CONFIG)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory, or a run directory whose `latest` file names one."""
    path = Path(path)
    if not path.exists():
        raise LlmarchError(f"checkpoint {path} does not exist")
    if (path / CONFIG).is_file():
        return path
    latest = path / "latest"
    if latest.is_file():
        target = path / latest.read_text().strip()
        if (target / CONFIG).is_file():
            return target
        raise LlmarchError(f"{latest} names {target.name}, which is not a checkpoint")
    raise LlmarchError(f"{path} is not a checkpoint: no {CONFIG} (and no `latest` file)")


def load_model(path: str | Path, device: str | torch.device | None = None) -> TransformerLM:
    path = resolve_checkpoint(path)
    cfg = ModelConfig.load(path / CONFIG)
    with torch.device("meta"):
        model = model_class(cfg)(cfg)
    expected = state_for_saving(model)
    if (path / SHARDED / ".metadata").is_file():
        return assemble(model, read_sharded(path / SHARDED, expected, device, cfg.tied_head), device)
    weights = path / WEIGHTS
    if not weights.is_file():
        raise LlmarchError(f"checkpoint {path} has no {WEIGHTS}")
    try:
        state = load_file(str(weights), device=str(device or "cpu"))
    except (SafetensorError, OSError, ValueError) as e:
        raise LlmarchError(f"cannot read {weights} (truncated or corrupt?): {str(e).splitlines()[0]}") from None
    check_state(weights, {k: tuple(v.shape) for k, v in state.items()}, expected)
    return assemble(model, state, device)


def check_state(source: Path, shapes: dict[str, tuple], expected: dict[str, torch.Tensor]) -> None:
    """Stored tensor names and shapes are exactly those the config's model has."""
    missing = sorted(set(expected) - set(shapes))
    extra = sorted(set(shapes) - set(expected))
    for names, what in ((missing, "is missing tensor"), (extra, "has unexpected tensor")):
        if names:
            raise LlmarchError(f"{source} {what} {first_and_count(names)}")
    for name, tensor in expected.items():
        if shapes[name] != tuple(tensor.shape):
            raise LlmarchError(f"tensor {name} has shape {shapes[name]}, config expects {tuple(tensor.shape)}")


def read_sharded(folder: Path, expected: dict[str, torch.Tensor], device, tied: bool) -> dict[str, torch.Tensor]:
    """The model's tensors from a torch.distributed.checkpoint folder (train/sharded.py: the shards of every
    process of a multi-process run, model and optimizer state), read whole into this one process."""
    import pickle
    import warnings

    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException

    unreadable = (OSError, ValueError, EOFError, pickle.UnpicklingError, CheckpointException)

    def error(e: BaseException) -> LlmarchError:  # DCP's exception carries the reading process' traceback
        detail = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        return LlmarchError(f"cannot read {folder} (truncated or corrupt?): {detail}")

    try:
        stored = dcp.FileSystemReader(folder).read_metadata().state_dict_metadata
    except unreadable as e:
        raise error(e) from None
    model = {k.removeprefix("model."): v for k, v in stored.items() if k.startswith("model.")}
    if tied:
        model.pop("lm_head.weight", None)  # stored under both names, like every name of a shared tensor
    check_state(folder, {k: tuple(v.size) for k, v in model.items()}, expected)
    state = {k: torch.empty(model[k].size, dtype=model[k].properties.dtype, device=device or "cpu")
             for k in expected}
    try:
        with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
            warnings.simplefilter("ignore")
            dcp.load({"model": state}, checkpoint_id=folder, no_dist=True)
    except unreadable as e:
        raise error(e) from None
    return state


def assemble(model: TransformerLM, state: dict[str, torch.Tensor], device) -> TransformerLM:
    """Finish a meta-device model with a complete state: take its tensors as they are (no copy), tie the
    head, and rebuild the derived non-persistent buffers (rotary frequencies, sinusoid tables)."""
    cfg = model.config
    model.load_state_dict(state, strict=False, assign=True)
    if cfg.tied_head:
        model.lm_head.weight = model.embed.weight
    for stack, stack_cfg in stacks(model):
        with torch.device(device or "cpu"):
            fresh = POSITIONS[stack_cfg.positions](stack_cfg)
        for name, buf in fresh.named_buffers():
            setattr(stack.positions, name, buf)
    return model


def atomic_directory(final: Path, write) -> None:
    """Write a directory under a temporary name beside `final`, then rename it into place, so a crash
    never leaves a half-written checkpoint under the final name."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        write(tmp)
        move_into_place(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def move_into_place(tmp: Path, final: Path) -> None:
    """Rename a completely written directory to `final`, replacing any directory of that name."""
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def publish(run: Path, name: str, keep: int) -> Path:
    """Name the run's newest checkpoint in its `latest` file, then remove those older than the last `keep`."""
    write_text_atomic(run / "latest", name + "\n")
    for old in sorted(p for p in run.glob("step-*") if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return run / name


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise LlmarchError(f"cannot read {path}: {e}") from None
